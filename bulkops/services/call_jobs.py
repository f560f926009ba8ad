"""One batch of a job of a calling operation: read, call, write.

1. A short transaction locks the job, checks that this worker holds it and that it is
   not cancelled, takes the next ids past the cursor and reads their items.
2. With no transaction open, `calls.call_items` calls them (the job's lease kept alive,
   its status watched: a cancel stops new calls).
3. One transaction locks the job again and, if the batch is still this worker's to write
   (its lease is held by no other worker and the cursor has not moved), writes the
   results with the settled items, the item failures, the counters, the batch's usage and
   the new cursor. Otherwise the results are dropped: whoever holds the job calls again.

The database effect is applied once; the calls are at least once, always with the same
idempotency keys (job id + item id). Usage is counted with the batch: the calls of a batch
that was never written (its worker killed, its results dropped, the batch handed back
while the provider was down) are not in `Job.usage`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from bulkops.db import job_runs
from bulkops.db.pool import tenant_transaction
from bulkops.domain import ErrorPolicy, JobStatus
from bulkops.models import ItemFailure, JobState
from bulkops.operations.base import BatchContext, BatchOutcome, JobAborted
from bulkops.operations.calling import CallBatch, CallContext, CallingOperation
from bulkops.outside import Usage
from bulkops.selection import Selection
from bulkops.services.calls import STOPPED, CallRound, call_items
from bulkops.services.chains import complete_step, record_outcome
from bulkops.services.container import Services
from bulkops.services.job_ends import (
    AbortBatch,
    BatchDone,
    abort_job,
    fail_job,
    finish_job,
)
from bulkops.services.progress import publish_state
from bulkops.services.queue import enqueue_slice

log = logging.getLogger(__name__)


class JobWatch:
    """A job seen by its worker while calls run: each look extends the lease (if the
    worker still holds it), shows the current step and waiting reason (published when
    they change) and says whether calls may go on."""

    def __init__(
        self, services: Services, job: JobState, worker_id: str, draining: asyncio.Event
    ) -> None:
        self.services = services
        self.job = job
        self.worker_id = worker_id
        self.draining = draining

    async def look(self, *, step: str, waiting_reason: str | None) -> bool:
        async with tenant_transaction(self.services.pool, self.job.tenant_id) as conn:
            watched = await job_runs.watch_job(
                conn,
                self.job.id,
                self.worker_id,
                self.services.settings.lease_seconds,
                step=step,
                waiting_reason=waiting_reason,
            )
        self.job = watched.state
        if watched.changed:
            await publish_state(self.services.redis, watched.state)
        return (
            not watched.state.terminal
            and watched.state.status != JobStatus.CANCELLING
            and watched.lease_owner in (None, self.worker_id)
        )

    def hold_over(self) -> bool:
        return self.draining.is_set()


async def run_job_batch(
    services: Services,
    op: CallingOperation[Any, Any, Any],
    params: Any,
    selection: Selection,
    *,
    job_id: str,
    tenant_id: str,
    worker_id: str,
    draining: asyncio.Event,
    batch_size: int,
) -> BatchDone | str:
    """One batch of the job (see the module's docstring). Returns the committed batch,
    or what stopped the slice before one: the job's status (PAUSED, ...), HELD (another
    worker holds it, or took it over meanwhile) or SLICED (the provider is down: the
    batch is handed back to the queue for the provider's next try)."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        locked, ids = await job_runs.lock_job_batch(
            conn, job_id, items=batch_size + 1 if selection.ids is not None else 0
        )
        job = before = locked.state
        if job.status == JobStatus.CANCELLING:
            job = await finish_job(conn, job, JobStatus.CANCELLED, step="cancelled")
            await op.release(conn, selection)
            return BatchDone(before, job, False)
        if job.status != JobStatus.RUNNING or locked.lease_owner != worker_id:
            return job.status if job.status != JobStatus.RUNNING else "HELD"
        if selection.ids is None:
            ids = await op.filter_batch(conn, selection, after=locked.cursor, limit=batch_size + 1)
        last = len(ids) <= batch_size
        ids = ids[:batch_size]
        if not ids:
            ctx = BatchContext(conn=conn, storage=services.storage, tenant_id=tenant_id)
            job = await complete_step(ctx, services.operations, job, selection)
            await op.release(conn, selection)
            return BatchDone(before, job, False)
        ctx = BatchContext(conn=conn, storage=services.storage, tenant_id=tenant_id)
        try:
            read = await op.read_items(ctx, params, ids)
        except JobAborted as exc:
            job = await fail_job(conn, job, ItemFailure(exc.code, exc.message), step="failed")
            await op.release(conn, selection)
            return BatchDone(before, job, False)
        cursor = locked.cursor

    watch = JobWatch(services, job, worker_id, draining)
    calls = CallContext(
        services.outside, services.storage, services.settings, tenant_id, job_id, Usage()
    )
    found = await call_items(
        op,
        calls,
        params,
        read.items,
        used=Usage.from_json(job.usage),
        watch=watch,
        error_policy=job.error_policy,
        waiting_reason=job.waiting_reason,
    )
    if found.unavailable is not None:
        return await _hand_back(services, watch.job, worker_id, found.unavailable.next_try_at)

    async with tenant_transaction(services.pool, tenant_id) as conn:
        locked = await job_runs.lock_job(conn, job_id)
        job = before = locked.state
        if job.terminal:
            return job.status
        if locked.cursor != cursor or locked.lease_owner not in (None, worker_id):
            return "HELD"
        ctx = BatchContext(conn=conn, storage=services.storage, tenant_id=tenant_id)
        # Paused meanwhile (its lease let go): the batch is written, the job stays paused.
        holds = job.status == JobStatus.RUNNING and locked.lease_owner == worker_id
        lease = services.settings.lease_seconds if holds else None
        job = await _write(ctx, op, params, job, ids, read, found, lease_seconds=lease)
        if not job.terminal:
            if job.status == JobStatus.CANCELLING:
                job = await finish_job(conn, job, JobStatus.CANCELLED, step="cancelled")
            elif found.stopped:
                job = await _stop(ctx, services, job, selection, found.stopped)
            elif last:
                job = await complete_step(ctx, services.operations, job, selection)
        if job.terminal:
            await op.release(conn, selection)
    return BatchDone(before, job, True)


async def _hand_back(services: Services, job: JobState, worker_id: str, next_try_at: float) -> str:
    """Let go of the job and queue its next slice for the provider's next try: the
    batch's calls are made again then, with the same idempotency keys."""
    async with tenant_transaction(services.pool, job.tenant_id) as conn:
        await job_runs.release_lease(conn, job.id, worker_id)
    try:
        await enqueue_slice(
            services.redis,
            job.id,
            job.tenant_id,
            job.priority,
            delay=max(0.0, next_try_at - time.time()),
        )
    except (RedisError, OSError):
        # Unheld and not queued: the reconciler enqueues it once Redis is back.
        log.warning("could not re-enqueue job %s; the reconciler will", job.id)
    return "SLICED"


async def _stop(
    ctx: BatchContext, services: Services, job: JobState, selection: Selection, reason: str
) -> JobState:
    """End the job because its stop reason says so: the items not called are skipped,
    with one error giving the reason, also kept in the job's result."""
    job = await job_runs.record_batch(
        ctx.conn,
        job.id,
        cursor=None,
        succeeded=0,
        failed=0,
        skipped=max(0, job.total - job.processed),
        counters={},
        errors=[ItemFailure(STOPPED, reason)],
        step="done",
    )
    return await complete_step(
        ctx, services.operations, job, selection, extra={"stopReason": reason}
    )


async def _write(
    ctx: BatchContext,
    op: CallingOperation[Any, Any, Any],
    params: Any,
    job: JobState,
    ids: list[int],
    read: CallBatch[Any],
    found: CallRound,
    *,
    lease_seconds: float | None,
) -> JobState:
    """Write the batch's results and record it on the job, in the caller's transaction."""
    conn = ctx.conn
    usage = found.usage.to_json()
    outcome = BatchOutcome()
    outcome.add(read.settled)
    try:
        async with conn.transaction():
            if found.done:
                written = await op.write_results(ctx, params, found.done)
                await record_outcome(conn, job, written)
                outcome.add(written)
            outcome.add(found.outcome)
            if outcome.failed and job.error_policy == ErrorPolicy.ABORT:
                raise AbortBatch(outcome)
    except AbortBatch as aborted:
        return await abort_job(conn, job, aborted.outcome, usage=usage)
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
        step="running" if lease_seconds is not None else (job.current_step or "running"),
        lease_seconds=lease_seconds,
        usage=usage,
    )
