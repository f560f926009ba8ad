"""Job rows: creation, the per-batch update, status changes and reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
) -> JobState:
    """The job row and, when the selection is explicit ids, its `item_ids`: one statement."""
    row = await conn.fetchrow(
        """WITH job AS (
             INSERT INTO jobs (operation, priority, error_policy, params, selection, total,
                               parent_id, idempotency_key, current_step)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued')
             RETURNING *),
           items AS (
             INSERT INTO job_items (job_id, item_id)
             SELECT job.id, item FROM job, unnest($9::bigint[]) AS item)
           SELECT * FROM job""",
        operation,
        priority,
        error_policy,
        params,
        selection,
        total,
        parent_id,
        idempotency_key,
        item_ids,
    )
    return JobState.from_row(row)


async def insert_job_items(conn: asyncpg.Connection, job_id: str, ids: list[int]) -> None:
    await conn.execute(
        "INSERT INTO job_items (job_id, item_id) SELECT $1, unnest($2::bigint[])", job_id, ids
    )


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


@dataclass(frozen=True)
class LockedJob:
    """A job row locked until the transaction ends, with what only the runner needs."""

    state: JobState
    selection: dict[str, Any]
    cursor: int
    lease_owner: str | None
    lease_live: bool


async def lock_job(conn: asyncpg.Connection, job_id: str) -> LockedJob:
    """The job row, locked until the transaction ends (LookupError when there is none)."""
    row = await conn.fetchrow(
        """SELECT *, COALESCE(lease_expires_at > clock_timestamp(), false) AS lease_live
           FROM jobs WHERE id = $1 AND tenant_id = current_tenant_id() FOR UPDATE""",
        job_id,
    )
    if row is None:
        raise LookupError(job_id)
    return _locked(row)


@dataclass(frozen=True)
class ClaimedJob:
    """A job row locked for a worker starting a slice, with the tenant's other started,
    unfinished jobs counted when the job is still QUEUED (for the running-jobs quota)."""

    locked: LockedJob
    running_others: int


async def claim_job(conn: asyncpg.Connection, job_id: str) -> ClaimedJob:
    """The job row locked until the transaction ends, and, when it is QUEUED, how many of
    the tenant's other jobs are started and unfinished, in one round trip (LookupError
    when there is no such job)."""
    row = await conn.fetchrow(
        """WITH j AS (
             SELECT *, COALESCE(lease_expires_at > clock_timestamp(), false) AS lease_live
             FROM jobs WHERE id = $1 AND tenant_id = current_tenant_id() FOR UPDATE)
           SELECT j.*,
                  CASE WHEN j.status = 'QUEUED' THEN (
                    SELECT count(*) FROM jobs o
                    WHERE o.tenant_id = current_tenant_id() AND o.id <> j.id
                      AND o.status IN ('RUNNING', 'CANCELLING')) ELSE 0 END AS running_others
           FROM j""",
        job_id,
    )
    if row is None:
        raise LookupError(job_id)
    return ClaimedJob(_locked(row), row["running_others"])


async def lock_job_batch(
    conn: asyncpg.Connection, job_id: str, *, items: int
) -> tuple[LockedJob, list[int]]:
    """The job row locked until the transaction ends, with the next `items` of its stored
    ids past the cursor read under that lock (none when `items` is 0), in one round trip.
    The ids come along the primary key whatever the statistics say (job_item_batch in
    migration 0009). LookupError when there is no such job."""
    row = await conn.fetchrow(
        """WITH j AS (
             SELECT *, COALESCE(lease_expires_at > clock_timestamp(), false) AS lease_live
             FROM jobs WHERE id = $1 AND tenant_id = current_tenant_id() FOR UPDATE)
           SELECT j.*,
                  CASE WHEN $2 > 0
                       THEN ARRAY(SELECT job_item_batch(j.id, j.cursor, $2)) END AS next_items
           FROM j""",
        job_id,
        items,
    )
    if row is None:
        raise LookupError(job_id)
    return _locked(row), list(row["next_items"] or ())


def _locked(row: asyncpg.Record) -> LockedJob:
    return LockedJob(
        JobState.from_row(row),
        row["selection"],
        row["cursor"],
        row["lease_owner"],
        row["lease_live"],
    )


async def start_running(
    conn: asyncpg.Connection, job_id: str, owner: str, lease_seconds: float
) -> JobState:
    """Move the job to RUNNING for a new slice held by `owner`, with its lease, in one
    statement (what set_status RUNNING and hold_lease do together)."""
    row = await conn.fetchrow(
        """UPDATE jobs SET
             status = 'RUNNING',
             current_step = 'running',
             version = version + 1,
             updated_at = clock_timestamp(),
             started_at = COALESCE(started_at, clock_timestamp()),
             slices = slices + 1,
             lease_owner = $2,
             lease_expires_at = clock_timestamp() + make_interval(secs => $3)
           WHERE id = $1 AND tenant_id = current_tenant_id()
           RETURNING *""",
        job_id,
        owner,
        lease_seconds,
    )
    return JobState.from_row(row)


async def hold_lease(
    conn: asyncpg.Connection, job_id: str, owner: str | None, seconds: float
) -> None:
    """Hold (or, with owner None, release) the job's lease."""
    await conn.execute(
        """UPDATE jobs SET lease_owner = $2,
             lease_expires_at = CASE WHEN $2::text IS NULL THEN NULL
                                     ELSE clock_timestamp() + make_interval(secs => $3) END
           WHERE id = $1 AND tenant_id = current_tenant_id()""",
        job_id,
        owner,
        seconds,
    )


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
    status: str = await conn.execute(
        """INSERT INTO job_items (job_id, item_id)
           SELECT $2, item_id FROM job_items
           WHERE job_id = $1 AND tenant_id = current_tenant_id()""",
        source,
        target,
    )
    return int(status.rsplit(" ", 1)[-1])


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


async def record_batch(
    conn: asyncpg.Connection,
    job_id: str,
    *,
    cursor: int | None,
    succeeded: int,
    failed: int,
    skipped: int,
    counters: dict[str, int],
    errors: list[ItemFailure],
    step: str,
    lease_seconds: float | None = None,
) -> JobState:
    """Add one batch's outcome to the job, in the batch's own transaction; a `cursor`
    of None leaves the cursor where it is."""
    if errors:
        await conn.executemany(
            """INSERT INTO job_errors (job_id, item_id, row_number, column_name, code, message)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            [(job_id, e.item_id, e.row, e.column, e.code, e.message) for e in errors],
        )
    recent = [e.to_json() for e in errors[-RECENT_ERRORS:]]
    row = await conn.fetchrow(
        """UPDATE jobs SET
             cursor = COALESCE($2, cursor),
             processed = processed + $3 + $4 + $5,
             succeeded = succeeded + $3,
             failed = failed + $4,
             skipped = skipped + $5,
             counters = (SELECT COALESCE(jsonb_object_agg(k, v), '{}'::jsonb) FROM (
                           SELECT k, sum(v::bigint) AS v FROM (
                             SELECT key AS k, value AS v FROM jsonb_each_text(counters)
                             UNION ALL
                             SELECT key, value FROM jsonb_each_text($6::jsonb)) AS both_
                           GROUP BY k) AS summed),
             recent_errors = CASE WHEN jsonb_array_length($7::jsonb) = 0 THEN recent_errors
                                  ELSE (SELECT COALESCE(jsonb_agg(e), '[]'::jsonb) FROM (
                                          SELECT e FROM jsonb_array_elements(
                                            recent_errors || $7::jsonb) WITH ORDINALITY AS x(e, n)
                                          ORDER BY n DESC LIMIT $9) AS last_) END,
             current_step = $8,
             version = version + 1,
             updated_at = clock_timestamp(),
             lease_expires_at = CASE WHEN $10::float8 IS NULL THEN lease_expires_at
                                     ELSE clock_timestamp() + make_interval(secs => $10) END
           WHERE id = $1 AND tenant_id = current_tenant_id()
           RETURNING *""",
        job_id,
        cursor,
        succeeded,
        failed,
        skipped,
        counters,
        recent,
        step,
        RECENT_ERRORS,
        lease_seconds,
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


async def settle_total(conn: asyncpg.Connection, job_id: str) -> JobState:
    """Make the job's total what it went through (a filter may gain or lose items)."""
    row = await conn.fetchrow(
        """UPDATE jobs SET total = processed
           WHERE id = $1 AND tenant_id = current_tenant_id() RETURNING *""",
        job_id,
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
