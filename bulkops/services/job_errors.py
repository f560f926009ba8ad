"""A job's failed items as one streamed CSV (GET /jobs/{id}/errors.csv)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from bulkops.db import jobs as jobs_db
from bulkops.db.job_errors import copy_errors
from bulkops.db.pool import tenant_transaction
from bulkops.services.copy_stream import CopyStream


async def job_exists(pool: asyncpg.Pool, tenant_id: str, job_id: str) -> bool:
    """Whether the tenant has the job."""
    async with tenant_transaction(pool, tenant_id) as conn:
        return await jobs_db.get_job(conn, job_id) is not None


def errors_stream(
    pool: asyncpg.Pool,
    tenant_id: str,
    job_id: str,
    *,
    on_close: Callable[[], None] | None = None,
) -> CopyStream:
    """The job's item errors as CSV with a header, in the order `Job.errors` lists them."""

    async def copy(conn: asyncpg.Connection, output: Callable[[bytes], Awaitable[None]]) -> None:
        await copy_errors(conn, job_id, output=output)

    return CopyStream(pool, tenant_id, copy, name="errors download", on_close=on_close)
