"""Acting on jobs: cancel, pause, resume, retry."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from redis.asyncio import Redis

from bulkops import metrics
from bulkops.db import chains as chains_db
from bulkops.db import job_runs, match_inputs
from bulkops.db import jobs as jobs_db
from bulkops.db.pool import tenant_transaction
from bulkops.domain import JobStatus, RetryScope
from bulkops.errors import InputError, NotFoundError
from bulkops.models import JobState
from bulkops.operations import REGISTRY, Registry
from bulkops.operations.base import Retry
from bulkops.selection import Selection, StagedRows
from bulkops.services.progress import publish_state
from bulkops.services.queue import enqueue_slice

log = logging.getLogger(__name__)


def log_fields(job: JobState) -> dict[str, str]:
    """The fields a job's log lines carry, for a line logged outside the job's own work
    (where the worker binds them): `log.info(..., extra=log_fields(job))`."""
    return {"job_id": job.id, "tenant_id": job.tenant_id, "operation": job.operation}


async def cancel_job(pool: asyncpg.Pool, redis: Redis, tenant_id: str, job_id: str) -> JobState:
    """A queued or paused job ends CANCELLED at once; a running one is asked to stop
    (CANCELLING) and ends CANCELLED after its current batch, keeping what was done. The
    steps of its chain after it never start. For a step that has ended while its chain
    goes on, the chain's unfinished step is the one cancelled (and returned)."""
    async with tenant_transaction(pool, tenant_id) as conn:
        job = await _locked(conn, job_id)
        if job.terminal and job.next_id is not None:
            following = await chains_db.following_live_step(conn, job_id)
            if following is not None:
                job = await _locked(conn, following)
                job_id = job.id
        if job.terminal:
            raise InputError(
                f"The job already ended {job.status}.", code="JOB_FINISHED", field=["id"]
            )
        if job.status == JobStatus.CANCELLING:
            return job
        if job.status in (JobStatus.QUEUED, JobStatus.PAUSED):
            job = await jobs_db.set_status(
                conn, job_id, JobStatus.CANCELLED, step="cancelled", result=job_result(job)
            )
        else:
            job = await jobs_db.set_status(conn, job_id, JobStatus.CANCELLING, step="cancelling")
    if job.terminal:
        metrics.count_job_end(job.operation, job.status)
    log.info("job cancel asked: now %s", job.status, extra=log_fields(job))
    await publish_state(redis, job)
    return job


async def pause_job(pool: asyncpg.Pool, redis: Redis, tenant_id: str, job_id: str) -> JobState:
    """A queued or running job stops after its current batch and waits as PAUSED."""
    async with tenant_transaction(pool, tenant_id) as conn:
        job = await _locked(conn, job_id)
        if job.status == JobStatus.PAUSED:
            return job
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            raise InputError(
                f"A {job.status} job cannot be paused.", code="JOB_NOT_PAUSABLE", field=["id"]
            )
        job = await jobs_db.set_status(conn, job_id, JobStatus.PAUSED, step="paused")
    log.info("job paused", extra=log_fields(job))
    await publish_state(redis, job)
    return job


async def resume_job(pool: asyncpg.Pool, redis: ArqRedis, tenant_id: str, job_id: str) -> JobState:
    """A paused job is queued again and continues from its cursor."""
    async with tenant_transaction(pool, tenant_id) as conn:
        job = await _locked(conn, job_id)
        if job.status != JobStatus.PAUSED:
            raise InputError(
                f"Only a paused job can be resumed; this one is {job.status}.",
                code="JOB_NOT_PAUSED",
                field=["id"],
            )
        job = await jobs_db.set_status(conn, job_id, JobStatus.QUEUED, step="queued")
    await enqueue_slice(redis, job.id, tenant_id, job.priority)
    log.info("job resumed", extra=log_fields(job))
    await publish_state(redis, job)
    return job


async def retry_job(
    pool: asyncpg.Pool,
    redis: ArqRedis,
    tenant_id: str,
    job_id: str,
    *,
    scope: RetryScope,
    operations: Registry = REGISTRY,
    created_by: str | None = None,
) -> JobState:
    """A new job, linked to this one as its parent and created by `created_by` (who
    retries, not who made the parent), over the items that failed
    (FAILED_ITEMS) or over the whole original selection (ALL), as the operation's `retry`
    says: a matchProducts job's rows are staged again for the child, whose results are its
    own; an import's rows are gone once it ends, and an export's file is written once
    (both NOT_RETRYABLE)."""
    async with tenant_transaction(pool, tenant_id) as conn:
        job = await _locked(conn, job_id)
        if not job.terminal:
            raise InputError(
                f"The job is still {job.status}; retry it once it has ended.",
                code="JOB_NOT_FINISHED",
                field=["id"],
            )
        op = operations.get(job.operation)
        if op is None or op.retry is Retry.NEVER:
            raise InputError(
                op.not_retryable if op is not None else f"No operation {job.operation!r} runs.",
                code="NOT_RETRYABLE",
                field=["id"],
            )
        selection = await jobs_db.raw_selection(conn, job_id)
        if op.retry is Retry.STAGED_INPUT:
            child = await _retry_match(conn, job, selection, scope=scope, created_by=created_by)
        else:
            child = await _retry_items(conn, job, selection, scope=scope, created_by=created_by)
        if child.chain:
            # The retry goes on with the chain, from what the step already did.
            await chains_db.copy_outcome(conn, job.id, child.id)
    await enqueue_slice(redis, child.id, tenant_id, child.priority)
    log.info("job queued: retry of %s", job_id, extra=log_fields(child))
    await publish_state(redis, child)
    return child


async def _retry_items(
    conn: asyncpg.Connection,
    job: JobState,
    selection: dict[str, Any],
    *,
    scope: RetryScope,
    created_by: str | None,
) -> JobState:
    """The child of a job over catalog items: its failed ids, or its selection again."""
    failed: list[int] = []
    if scope == RetryScope.FAILED_ITEMS:
        failed = await jobs_db.failed_item_ids(conn, job.id)
        if not failed:
            raise _nothing_to_retry()
        selection = {"ids": True}
    child = await jobs_db.insert_job(
        conn,
        operation=job.operation,
        priority=job.priority,
        error_policy=job.error_policy,
        params=job.params,
        selection=selection,
        total=len(failed) if failed else job.total,
        parent_id=job.id,
        created_by=created_by,
        chain=_rest_of_chain(job),
    )
    if failed:
        await jobs_db.insert_job_items(conn, child.id, failed)
    elif "ids" in selection:
        total = await jobs_db.copy_job_items(conn, job.id, child.id)
        child = await jobs_db.set_total(conn, child.id, total)
    return child


async def _retry_match(
    conn: asyncpg.Connection,
    job: JobState,
    selection: dict[str, Any],
    *,
    scope: RetryScope,
    created_by: str | None,
) -> JobState:
    """The child of a matchProducts job: the same rows (ALL) or the rows that failed
    (FAILED_ITEMS), staged again under an input of its own, so that its results never
    overwrite the parent's. It matches against the catalog as it is when it runs."""
    rows: list[int] | None = None
    if scope == RetryScope.FAILED_ITEMS:
        rows = await match_inputs.failed_rows(conn, job.id)
        if not rows:
            raise _nothing_to_retry()
    input_id = str(uuid.uuid4())
    staged = await match_inputs.copy_input(conn, job.params["input_id"], input_id, rows=rows)
    if staged is None:
        raise InputError(
            "The job's input rows are no longer kept; send them again.",
            code="NOT_RETRYABLE",
            field=["id"],
        )
    digest = selection["staged"]["digest"]
    return await jobs_db.insert_job(
        conn,
        operation=job.operation,
        priority=job.priority,
        error_policy=job.error_policy,
        params={**job.params, "input_id": input_id},
        selection=Selection(staged=StagedRows(upload_id=input_id, digest=digest)).to_json(),
        total=staged,
        parent_id=job.id,
        created_by=created_by,
        chain=_rest_of_chain(job),
    )


def _rest_of_chain(job: JobState) -> tuple[dict[str, Any], ...]:
    """The chain a retry carries on: the step's, unless the chain went on already (a
    PARTIAL step whose next step runs on partial)."""
    return job.chain if job.next_id is None else ()


def _nothing_to_retry() -> InputError:
    return InputError(
        "The job has no failed items to retry.", code="NOTHING_TO_RETRY", field=["scope"]
    )


async def _locked(conn: asyncpg.Connection, job_id: str) -> JobState:
    try:
        return (await job_runs.lock_job(conn, job_id)).state
    except LookupError:
        raise NotFoundError(f"No job {job_id}.", field=["id"]) from None


def job_result(job: JobState) -> dict[str, object]:
    """The summary stored on a job when it ends."""
    return {
        "matched": job.total,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "skipped": job.skipped,
        **job.counters,
    }
