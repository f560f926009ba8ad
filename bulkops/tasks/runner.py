"""Running a job: slices of batches, each batch one transaction with its effect,
the job's counters and the new cursor, so a batch is applied exactly once."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from bulkops import logs, metrics
from bulkops.config import Settings
from bulkops.db import job_runs
from bulkops.db.pool import tenant_transaction
from bulkops.domain import ErrorPolicy, JobStatus
from bulkops.models import ItemFailure, JobState
from bulkops.operations.base import BatchContext, JobAborted, Operation
from bulkops.operations.calling import CallingOperation
from bulkops.selection import Selection
from bulkops.services.call_jobs import run_job_batch
from bulkops.services.chains import announce_next, complete_step, record_outcome
from bulkops.services.container import Services
from bulkops.services.job_ends import (
    AbortBatch,
    BatchDone,
    abort_job,
    fail_job,
    finish_job,
)
from bulkops.services.progress import publish_state
from bulkops.services.queue import enqueue_slice, request_purge, work_waiting
from bulkops.storage import Storage

log = logging.getLogger(__name__)

SLICES_IN_A_ROW = 10


@dataclass(frozen=True)
class WorkerDeps:
    """What a worker's tasks use: the services (built once at the worker's start) and the
    worker's own state."""

    services: Services
    # Set on SIGTERM: running slices stop at the next batch boundary and re-enqueue.
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    # Names this worker process in job leases.
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    # The slices running now (counted by `bulkops.tasks.heartbeat.count_running`).
    running: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self.services.pool

    @property
    def storage(self) -> Storage:
        return self.services.storage


async def run_slice(
    deps: WorkerDeps,
    redis: ArqRedis,
    job_id: str,
    tenant_id: str,
    *,
    ready_at: float | None = None,
) -> str:
    """Run the job for one slice; re-enqueue it from its cursor if work is left.
    `ready_at` (epoch seconds) is when the slice could first have started, for the
    pickup time of a slice that runs.

    Returns what happened: the job's terminal status, SLICED (more to do, re-enqueued),
    HELD (another worker holds the job), THROTTLED (the tenant's running-job quota is
    full; re-enqueued shortly), PAUSED, or MISSING."""
    settings = deps.settings
    throttled = False
    async with tenant_transaction(deps.pool, tenant_id) as conn:
        try:
            claimed = await job_runs.claim_job(conn, job_id)
        except LookupError:
            return "MISSING"
        locked = claimed.locked
        job = locked.state
        logs.bind(operation=job.operation)
        if job.terminal or job.status == JobStatus.PAUSED:
            return job.status
        if locked.lease_live and locked.lease_owner != deps.worker_id:
            return "HELD"
        op: Operation[Any] | None = deps.services.operations.get(job.operation)
        if job.status == JobStatus.CANCELLING:
            job = await finish_job(conn, job, JobStatus.CANCELLED, step="cancelled")
            if op is not None:
                await op.release(conn, Selection.from_job(locked.selection))
        elif op is None:
            job = await fail_job(
                conn,
                job,
                ItemFailure("UNKNOWN_OPERATION", f"No operation {job.operation!r} is registered."),
                step="failed",
            )
        elif job.status == JobStatus.QUEUED and (
            claimed.running_others >= settings.max_running_jobs_per_tenant
        ):
            throttled = True
        else:
            job = await job_runs.start_running(conn, job_id, deps.worker_id, settings.lease_seconds)
    if throttled:
        await enqueue_slice(
            redis, job.id, tenant_id, job.priority, delay=settings.quota_retry_seconds
        )
        return "THROTTLED"
    await publish_state(redis, job)
    if job.terminal or op is None:
        metrics.count_job_end(job.operation, job.status)
        return job.status
    if ready_at is not None:
        metrics.JOB_PICKUP.observe(max(0.0, time.time() - ready_at))
    with metrics.RUNNING_JOBS.track_inprogress():
        return await _run_batches(deps, redis, op, job, locked.selection, tenant_id)


async def _run_batches(
    deps: WorkerDeps,
    redis: ArqRedis,
    op: Operation[Any],
    job: JobState,
    stored_selection: dict[str, Any],
    tenant_id: str,
) -> str:
    """The batches of one slice of a job this worker holds, until the job ends, the
    slice's time is up (re-enqueued: SLICED) or the job is paused or handed over."""
    settings = deps.settings
    job_id = job.id
    deadline = time.monotonic() + settings.slice_seconds
    # A slice runs on while nothing else waits, up to this many slices' time in one go
    # (well inside arq's job timeout, which worker.py sets to 20 slices or more).
    longest = time.monotonic() + settings.slice_seconds * SLICES_IN_A_ROW
    params = op.parse_params(job.params)
    selection = Selection.from_job(stored_selection)
    batch_size = settings.batch_size or (
        op.batch_size(settings) if isinstance(op, CallingOperation) else op.thresholds.batch_size
    )
    last_publish = time.monotonic()
    while True:
        started = time.perf_counter()
        if isinstance(op, CallingOperation):
            done = await run_job_batch(
                deps.services,
                op,
                params,
                selection,
                job_id=job_id,
                tenant_id=tenant_id,
                worker_id=deps.worker_id,
                draining=deps.draining,
                batch_size=batch_size,
            )
        else:
            done = await _db_batch(deps, op, params, selection, job_id, tenant_id, batch_size)
        if isinstance(done, str):
            return done
        before, job, applied = done.before, done.job, done.applied
        status_before = before.status
        # Counted once committed: a batch whose transaction fails is run again.
        if applied:
            metrics.BATCH_DURATION.labels(op.name).observe(time.perf_counter() - started)
            metrics.count_items(
                op.name,
                succeeded=job.succeeded - before.succeeded,
                failed=job.failed - before.failed,
                skipped=job.skipped - before.skipped,
            )
        if job.terminal:
            metrics.count_job_end(job.operation, job.status)
            await announce_next(deps.services, job)
        now = time.monotonic()
        if (
            job.terminal
            or job.status != status_before
            or (now - last_publish >= settings.publish_interval)
        ):
            await publish_state(redis, job)
            last_publish = now
        if job.terminal and op.deletes_files:
            # Off the job's path: unlinking files is slower than deleting their rows, and
            # on the same cores it would slow the job's batches down. The files go once the
            # job has ended (and, for a long job, with the sweep every minute meanwhile).
            await request_purge(redis, tenant_id, final=True)
        if job.terminal:
            return job.status
        if settings.batch_pause_seconds:
            await asyncio.sleep(settings.batch_pause_seconds)
        if (
            now >= deadline
            and settings.slice_seconds > 0
            and now + settings.slice_seconds <= longest
            and not deps.draining.is_set()
            and not await _others_wait(redis)
        ):
            # Slices share the workers; with nothing else to run, this one goes on. (With
            # slice_seconds 0 every batch is a slice of its own, whatever waits.)
            deadline = now + settings.slice_seconds
        elif now >= deadline or deps.draining.is_set():
            async with tenant_transaction(deps.pool, tenant_id) as conn:
                await job_runs.hold_lease(conn, job_id, None, 0)
            try:
                await enqueue_slice(
                    redis,
                    job.id,
                    tenant_id,
                    job.priority,
                    announce=job if last_publish != now else None,
                )
            except (RedisError, OSError):
                # Unheld and not queued: the reconciler enqueues it once Redis is back.
                log.warning("could not re-enqueue job %s; the reconciler will", job_id)
            return "SLICED"


async def _db_batch(
    deps: WorkerDeps,
    op: Operation[Any],
    params: Any,
    selection: Selection,
    job_id: str,
    tenant_id: str,
    batch_size: int,
) -> BatchDone | str:
    """One batch of a database operation: its effect, the job's counters and the new
    cursor in one transaction. Returns the committed batch, or the job's status (HELD
    when another worker holds it) when it is not this worker's to run."""
    async with tenant_transaction(deps.pool, tenant_id) as conn:
        # The job row is locked first and the cursor read under that lock; a stored
        # selection's next ids come with it. One id past the batch is read ahead, so
        # the batch that ends the selection knows it is the last one.
        locked, ids = await job_runs.lock_job_batch(
            conn, job_id, items=batch_size + 1 if selection.ids is not None else 0
        )
        job = before = locked.state
        applied = False
        if job.status == JobStatus.CANCELLING:
            job = await finish_job(conn, job, JobStatus.CANCELLED, step="cancelled")
        elif job.status != JobStatus.RUNNING or locked.lease_owner != deps.worker_id:
            # Paused, or handed to another worker while this one stalled.
            return job.status if job.status != JobStatus.RUNNING else "HELD"
        else:
            if selection.ids is None:
                ids = await op.filter_batch(
                    conn, selection, after=locked.cursor, limit=batch_size + 1
                )
            last = len(ids) <= batch_size
            ids = ids[:batch_size]
            if ids:
                batch = BatchContext(conn=conn, storage=deps.storage, tenant_id=tenant_id)
                job = await _apply(batch, op, params, job, ids, deps.settings.lease_seconds)
                applied = True
            if not job.terminal and last:
                # The last batch finishes the job (and makes its chain's next step) in the
                # same transaction.
                batch = BatchContext(conn=conn, storage=deps.storage, tenant_id=tenant_id)
                job = await complete_step(batch, deps.services.operations, job, selection)
        if job.terminal:
            await op.release(conn, selection)
    return BatchDone(before, job, applied)


def slice_ready_at(ctx: dict[str, Any]) -> float:
    """When the arq job of a slice could first start (epoch seconds): when it was
    enqueued, or, for a slice deferred past that (a tenant over its quota, a retry), its
    scheduled time. A HIGH slice is scored hours early to go first, so its score alone
    would not do."""
    enqueued: datetime = ctx["enqueue_time"]
    score: int = ctx["score"]
    return max(enqueued.timestamp(), score / 1000)


async def _others_wait(redis: ArqRedis) -> bool:
    """Whether other work waits for a worker; when Redis cannot tell, it is assumed to."""
    try:
        return await work_waiting(redis)
    except (RedisError, OSError):
        return True


async def _apply(
    batch: BatchContext,
    op: Operation[Any],
    params: Any,
    job: JobState,
    ids: list[int],
    lease_seconds: float,
) -> JobState:
    """Apply one batch inside the caller's transaction and record it on the job."""
    conn = batch.conn
    try:
        async with conn.transaction():
            outcome = await op.apply_batch(batch, params, ids)
            if outcome.failed and job.error_policy == ErrorPolicy.ABORT:
                raise AbortBatch(outcome)
            await record_outcome(conn, job, outcome)
    except AbortBatch as aborted:
        return await abort_job(conn, job, aborted.outcome)
    except JobAborted as exc:
        return await fail_job(conn, job, ItemFailure(exc.code, exc.message), step="failed")
    return await job_runs.record_batch(
        conn,
        job.id,
        cursor=ids[-1],
        succeeded=outcome.succeeded,
        failed=outcome.failed,
        skipped=outcome.skipped,
        counters=outcome.counters,
        errors=outcome.errors,
        step="running",
        lease_seconds=lease_seconds,
    )
