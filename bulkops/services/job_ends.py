"""How a running job ends, inside the transaction of its last batch: finished with a
status, failed with its reason recorded, or completed (SUCCEEDED, or PARTIAL with item
failures), or aborted by the ABORT error policy. Shared by the slice runner and the engine
of calling operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from bulkops.db import job_runs
from bulkops.db import jobs as jobs_db
from bulkops.domain import JobStatus
from bulkops.errors import BulkopsError
from bulkops.models import ItemFailure, JobState
from bulkops.operations.base import BatchOutcome
from bulkops.selection import Selection
from bulkops.services.jobs import job_result


async def finish_job(
    conn: asyncpg.Connection,
    job: JobState,
    status: str,
    *,
    step: str,
    extra: dict[str, Any] | None = None,
) -> JobState:
    """Move the job to `status`, storing its result (with `extra` keys added)."""
    result = {**job_result(job), **(extra or {})}
    return await jobs_db.set_status(conn, job.id, status, step=step, result=result)


async def fail_job(
    conn: asyncpg.Connection, job: JobState, failure: ItemFailure, *, step: str
) -> JobState:
    """End the job FAILED, recording why as one of its errors."""
    job = await job_runs.record_batch(
        conn,
        job.id,
        cursor=None,
        succeeded=0,
        failed=0,
        skipped=0,
        counters={},
        errors=[failure],
        step=step,
    )
    return await finish_job(conn, job, JobStatus.FAILED, step=step)


async def complete_job(
    conn: asyncpg.Connection,
    job: JobState,
    selection: Selection,
    *,
    extra: dict[str, Any] | None = None,
) -> JobState:
    """End a job whose selection is done: SUCCEEDED, or PARTIAL when items failed."""
    if selection.filter is not None:
        # A filter is walked live: what it held at the end is the job's real total.
        job = await job_runs.settle_total(conn, job.id)
    final = JobStatus.PARTIAL if job.failed else JobStatus.SUCCEEDED
    return await finish_job(conn, job, final, step="done", extra=extra)


@dataclass(frozen=True)
class BatchDone:
    """One batch of a job, committed: the job before and after it, and whether items
    were applied (for the batch's metrics)."""

    before: JobState
    job: JobState
    applied: bool


class AbortBatch(BulkopsError):
    """Undo a batch that failed under the ABORT policy, carrying its outcome out."""

    def __init__(self, outcome: BatchOutcome) -> None:
        super().__init__()
        self.outcome = outcome


async def abort_job(
    conn: asyncpg.Connection,
    job: JobState,
    outcome: BatchOutcome,
    *,
    usage: dict[str, Any] | None = None,
) -> JobState:
    """End the job FAILED under the ABORT policy: nothing of the batch is applied, its
    failures (and the usage of its calls) are recorded."""
    job = await job_runs.record_batch(
        conn,
        job.id,
        cursor=None,
        succeeded=0,
        failed=outcome.failed,
        skipped=0,
        counters={},
        errors=outcome.errors,
        step="aborted",
        usage=usage,
    )
    return await finish_job(conn, job, JobStatus.FAILED, step="aborted")
