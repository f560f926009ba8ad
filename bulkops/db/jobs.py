"""Job rows: creation, status changes, totals and reads (what a worker does to a running
job is in job_runs.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from bulkops.models import ItemFailure, JobState

RECENT_ERRORS = 10


async def insert_job(
    conn: asyncpg.Connection,
    *,
    operation: str,
    priority: str,
    error_policy: str,
    params: dict[str, Any],
    selection: dict[str, Any],
    total: int,
    parent_id: str | None = None,
    idempotency_key: str | None = None,
    item_ids: Sequence[int] | None = None,
    created_by: str | None = None,
    chain: Sequence[dict[str, Any]] = (),
) -> JobState:
    """The job row and, when the selection is explicit ids, its `item_ids` (sorted,
    unique; stored in chunks by store_job_items, migration 0022): one statement.
    `chain`: the steps that run after it."""
    row = await conn.fetchrow(
        """WITH job AS (
             INSERT INTO jobs (operation, priority, error_policy, params, selection, total,
                               parent_id, idempotency_key, current_step, created_by, chain)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $10, $11)
             RETURNING *)
           SELECT job.*, store_job_items(job.id, $9::bigint[]) AS stored_items FROM job""",
        operation,
        priority,
        error_policy,
        params,
        selection,
        total,
        parent_id,
        idempotency_key,
        item_ids,
        created_by,
        list(chain) or None,
    )
    return JobState.from_row(row)


async def insert_job_items(conn: asyncpg.Connection, job_id: str, ids: list[int]) -> None:
    """Store `ids` (sorted, unique) as the job's items."""
    await conn.execute("SELECT store_job_items($1, $2::bigint[])", job_id, ids)


async def get_job(conn: asyncpg.Connection, job_id: str) -> JobState | None:
    row = await conn.fetchrow(
        "SELECT * FROM jobs WHERE id = $1 AND tenant_id = current_tenant_id()", job_id
    )
    return JobState.from_row(row) if row else None


async def get_jobs(conn: asyncpg.Connection, job_ids: list[str]) -> list[JobState]:
    rows = await conn.fetch(
        "SELECT * FROM jobs WHERE id = ANY($1::uuid[]) AND tenant_id = current_tenant_id()",
        job_ids,
    )
    return [JobState.from_row(r) for r in rows]


async def queue_position(conn: asyncpg.Connection, job_id: str) -> int | None:
    """1 for the tenant's oldest queued job, and so on; None when the job is not queued."""
    position: int | None = await conn.fetchval(
        """SELECT CASE WHEN j.status = 'QUEUED' THEN (
                    SELECT count(*) FROM jobs q
                    WHERE q.tenant_id = j.tenant_id AND q.status = 'QUEUED'
                      AND (q.created_at, q.id) <= (j.created_at, j.id)) END
           FROM jobs j WHERE j.id = $1 AND j.tenant_id = current_tenant_id()""",
        job_id,
    )
    return position


async def failed_item_ids(conn: asyncpg.Connection, job_id: str) -> list[int]:
    rows = await conn.fetch(
        """SELECT DISTINCT item_id FROM job_errors
           WHERE job_id = $1 AND tenant_id = current_tenant_id() AND item_id IS NOT NULL
           ORDER BY item_id""",
        job_id,
    )
    return [r["item_id"] for r in rows]


async def copy_job_items(conn: asyncpg.Connection, source: str, target: str) -> int:
    """The job `target`'s items are `source`'s; how many."""
    copied: int = await conn.fetchval(
        """WITH copied AS (
             INSERT INTO job_item_chunks (job_id, first_id, last_id, ids)
             SELECT $2, first_id, last_id, ids FROM job_item_chunks
             WHERE job_id = $1 AND tenant_id = current_tenant_id()
             RETURNING cardinality(ids) AS n)
           SELECT COALESCE(sum(n), 0)::bigint FROM copied""",
        source,
        target,
    )
    return copied


async def raw_selection(conn: asyncpg.Connection, job_id: str) -> dict[str, Any]:
    selection: dict[str, Any] = await conn.fetchval(
        "SELECT selection FROM jobs WHERE id = $1 AND tenant_id = current_tenant_id()", job_id
    )
    return selection


async def set_status(
    conn: asyncpg.Connection,
    job_id: str,
    status: str,
    *,
    step: str | None = None,
    result: dict[str, Any] | None = None,
) -> JobState:
    """Move the job to `status`; sets started_at on RUNNING and finished_at on a terminal one."""
    row = await conn.fetchrow(
        """UPDATE jobs SET
             status = $2,
             current_step = COALESCE($3, current_step),
             result = COALESCE($4, result),
             version = version + 1,
             updated_at = clock_timestamp(),
             started_at = CASE WHEN $2 = 'RUNNING' THEN COALESCE(started_at, clock_timestamp())
                               ELSE started_at END,
             finished_at = CASE WHEN $2 IN ('CANCELLED', 'SUCCEEDED', 'PARTIAL', 'FAILED')
                                THEN clock_timestamp() ELSE finished_at END,
             waiting_reason = CASE WHEN $2 IN ('CANCELLED', 'SUCCEEDED', 'PARTIAL', 'FAILED')
                                   THEN NULL ELSE waiting_reason END,
             slices = slices + CASE WHEN $2 = 'RUNNING' THEN 1 ELSE 0 END,
             lease_owner = CASE WHEN $2 IN ('RUNNING', 'CANCELLING') THEN lease_owner END,
             lease_expires_at = CASE WHEN $2 IN ('RUNNING', 'CANCELLING')
                                     THEN lease_expires_at END
           WHERE id = $1 AND tenant_id = current_tenant_id()
           RETURNING *""",
        job_id,
        status,
        step,
        result,
    )
    return JobState.from_row(row)


async def set_total(conn: asyncpg.Connection, job_id: str, total: int) -> JobState:
    row = await conn.fetchrow(
        """UPDATE jobs SET total = $2 WHERE id = $1 AND tenant_id = current_tenant_id()
           RETURNING *""",
        job_id,
        total,
    )
    return JobState.from_row(row)


async def list_jobs(
    conn: asyncpg.Connection,
    *,
    statuses: list[str] | None,
    operation: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[JobState]:
    """The tenant's jobs, newest first; `before` is the (created_at, id) of the last seen."""
    args: list[Any] = [limit]
    where = ["tenant_id = current_tenant_id()"]
    if statuses:
        args.append(statuses)
        where.append(f"status = ANY(${len(args)}::text[])")
    if operation:
        args.append(operation)
        where.append(f"operation = ${len(args)}")
    if before:
        args.extend(before)
        where.append(f"(created_at, id) < (${len(args) - 1}::timestamptz, ${len(args)}::uuid)")
    rows = await conn.fetch(
        f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC"
        " LIMIT $1",
        *args,
    )
    return [JobState.from_row(r) for r in rows]


async def count_jobs(
    conn: asyncpg.Connection, *, statuses: list[str] | None, operation: str | None
) -> int:
    count: int = await conn.fetchval(
        """SELECT count(*) FROM jobs WHERE tenant_id = current_tenant_id()
             AND ($1::text[] IS NULL OR status = ANY($1::text[]))
             AND ($2::text IS NULL OR operation = $2)""",
        statuses,
        operation,
    )
    return count


async def list_errors(
    conn: asyncpg.Connection, job_id: str, *, after: int, limit: int
) -> list[tuple[int, ItemFailure]]:
    rows = await conn.fetch(
        """SELECT id, item_id, row_number, column_name, code, message FROM job_errors
           WHERE job_id = $1 AND id > $2 AND tenant_id = current_tenant_id()
           ORDER BY id LIMIT $3""",
        job_id,
        after,
        limit,
    )
    return [
        (
            r["id"],
            ItemFailure(r["code"], r["message"], r["item_id"], r["row_number"], r["column_name"]),
        )
        for r in rows
    ]


async def count_errors(conn: asyncpg.Connection, job_id: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM job_errors WHERE job_id = $1 AND tenant_id = current_tenant_id()",
        job_id,
    )
    return count
