"""Reading jobs and their item errors as the API shows them (acting on jobs is in jobs)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from bulkops.db import jobs as jobs_db
from bulkops.db.pool import tenant_transaction
from bulkops.domain import TERMINAL_STATUSES, JobStatus
from bulkops.models import ItemFailure, JobState
from bulkops.services.pages import Page

UNFINISHED_STATUSES: list[str] = [s for s in JobStatus if s not in TERMINAL_STATUSES]


async def get_job(pool: asyncpg.Pool, tenant_id: str, job_id: str) -> JobState | None:
    """The tenant's job, or None."""
    async with tenant_transaction(pool, tenant_id) as conn:
        return await jobs_db.get_job(conn, job_id)


async def get_jobs(pool: asyncpg.Pool, tenant_id: str, job_ids: list[str]) -> list[JobState]:
    """Those of the jobs that are the tenant's, in no particular order."""
    async with tenant_transaction(pool, tenant_id) as conn:
        return await jobs_db.get_jobs(conn, job_ids)


async def list_jobs(
    pool: asyncpg.Pool,
    tenant_id: str,
    *,
    statuses: list[JobStatus] | None,
    operation: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> Page[JobState]:
    """The tenant's jobs, newest first, of any of `statuses` and of `operation` when
    given; `before` is the (created_at, id) of the last job seen."""
    wanted: list[str] | None = list(statuses) if statuses else None
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await jobs_db.list_jobs(
            conn, statuses=wanted, operation=operation, before=before, limit=limit + 1
        )
        total = await jobs_db.count_jobs(conn, statuses=wanted, operation=operation)
    return Page.of(rows, limit=limit, total=total)


async def list_unfinished_jobs(
    pool: asyncpg.Pool, tenant_id: str, *, limit: int = 100
) -> list[JobState]:
    """The tenant's jobs not yet in a terminal status, newest first."""
    async with tenant_transaction(pool, tenant_id) as conn:
        return await jobs_db.list_jobs(
            conn, statuses=UNFINISHED_STATUSES, operation=None, before=None, limit=limit
        )


async def list_job_errors(
    pool: asyncpg.Pool, tenant_id: str, job_id: str, *, after: int, limit: int
) -> Page[tuple[int, ItemFailure]]:
    """The job's item errors past error id `after`, in the order they were recorded,
    each with its id."""
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await jobs_db.list_errors(conn, job_id, after=after, limit=limit + 1)
        total = await jobs_db.count_errors(conn, job_id)
    return Page.of(rows, limit=limit, total=total)


async def queue_position(pool: asyncpg.Pool, tenant_id: str, job_id: str) -> int | None:
    """1 for the tenant's next job to start, and so on; None unless the job is QUEUED."""
    async with tenant_transaction(pool, tenant_id) as conn:
        return await jobs_db.queue_position(conn, job_id)
