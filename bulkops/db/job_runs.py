"""What a worker does to a job row: claim it, lock it batch by batch, hold its lease, and
record each batch with its counters and cursor."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import asyncpg

from bulkops.db.jobs import RECENT_ERRORS
from bulkops.models import ItemFailure, JobState


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
    The ids come from the job's chunks of ids past the cursor, as stored
    (job_item_chunks_past in migration 0023); the ids of the first at or before the cursor
    are skipped here. LookupError when there is no such job."""
    row = await conn.fetchrow(
        """WITH j AS (
             SELECT *, COALESCE(lease_expires_at > clock_timestamp(), false) AS lease_live
             FROM jobs WHERE id = $1 AND tenant_id = current_tenant_id() FOR UPDATE)
           SELECT j.*,
                  CASE WHEN $2 > 0
                       THEN job_item_chunks_past(j.id, j.cursor, $2) END AS next_chunks
           FROM j""",
        job_id,
        items,
    )
    if row is None:
        raise LookupError(job_id)
    locked = _locked(row)
    return locked, ids_past(row["next_chunks"], locked.cursor, items)


def ids_past(chunks: list[int] | None, cursor: int, items: int) -> list[int]:
    """The first `items` ids past `cursor` of a job's stored chunks joined in key order
    (`job_item_chunks_past`), whose first chunk may begin at or before the cursor."""
    ids = chunks or []
    first = bisect.bisect_right(ids, cursor)
    return ids[first : first + items]


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


@dataclass(frozen=True)
class WatchedJob:
    """A running job as a worker sees it while its batch's calls run: its state, the
    worker holding its lease, and whether this look changed it (a new version)."""

    state: JobState
    lease_owner: str | None
    changed: bool


async def watch_job(
    conn: asyncpg.Connection,
    job_id: str,
    owner: str,
    lease_seconds: float,
    *,
    step: str,
    waiting_reason: str | None,
) -> WatchedJob:
    """One look at a job while its batch's calls run, in one statement: extend the lease
    if `owner` still holds it, and, while it is RUNNING under that owner, set its current
    step and waiting reason (a new version when either changes). LookupError when there
    is no such job."""
    row = await conn.fetchrow(
        """WITH old AS (
             SELECT id, COALESCE(lease_owner = $2, false) AS owned,
                    COALESCE(lease_owner = $2, false) AND status = 'RUNNING'
                      AND (current_step IS DISTINCT FROM $4
                           OR waiting_reason IS DISTINCT FROM $5) AS changes
             FROM jobs WHERE id = $1 AND tenant_id = current_tenant_id() FOR UPDATE)
           UPDATE jobs j SET
             lease_expires_at = CASE WHEN old.owned
                                     THEN clock_timestamp() + make_interval(secs => $3)
                                     ELSE j.lease_expires_at END,
             current_step = CASE WHEN old.changes THEN $4 ELSE j.current_step END,
             waiting_reason = CASE WHEN old.changes THEN $5 ELSE j.waiting_reason END,
             version = j.version + CASE WHEN old.changes THEN 1 ELSE 0 END,
             updated_at = CASE WHEN old.changes THEN clock_timestamp() ELSE j.updated_at END
           FROM old WHERE j.id = old.id
           RETURNING j.*, old.changes""",
        job_id,
        owner,
        lease_seconds,
        step,
        waiting_reason,
    )
    if row is None:
        raise LookupError(job_id)
    return WatchedJob(JobState.from_row(row), row["lease_owner"], row["changes"])


async def release_lease(conn: asyncpg.Connection, job_id: str, owner: str) -> None:
    """Let go of the job's lease if `owner` still holds it."""
    await conn.execute(
        """UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
           WHERE id = $1 AND tenant_id = current_tenant_id() AND lease_owner = $2""",
        job_id,
        owner,
    )


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
    usage: dict[str, Any] | None = None,
) -> JobState:
    """Add one batch's outcome to the job, in the batch's own transaction; a `cursor`
    of None leaves the cursor where it is. `usage` (what the batch's outside calls cost,
    numbers by name) is added to the job's; a recorded batch clears the job's waiting
    reason (its calls went through)."""
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
             usage = CASE WHEN $11::jsonb IS NULL THEN usage
                          ELSE (SELECT jsonb_object_agg(k, v) FROM (
                                  SELECT k, sum(v::numeric) AS v FROM (
                                    SELECT key AS k, value AS v
                                    FROM jsonb_each_text(COALESCE(usage, '{}'::jsonb))
                                    UNION ALL
                                    SELECT key, value FROM jsonb_each_text($11::jsonb)) AS both_
                                  GROUP BY k) AS summed) END,
             waiting_reason = NULL,
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
        usage,
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
