"""Schedule rows and their ticks: one row per tick with what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bulkops.models import JobState


@dataclass(frozen=True)
class Schedule:
    """A bulk mutation run on a cron expression in a time zone."""

    id: str
    tenant_id: str
    name: str
    cron: str
    timezone: str
    overlap: str
    catchup_window_seconds: int
    operation: str
    arguments: dict[str, Any]
    created_by: str | None
    paused: bool
    paused_at: datetime | None
    next_run_at: datetime
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        return cls(
            id=str(row["id"]),
            tenant_id=str(row["tenant_id"]),
            name=row["name"],
            cron=row["cron"],
            timezone=row["timezone"],
            overlap=row["overlap"],
            catchup_window_seconds=row["catchup_window_seconds"],
            operation=row["operation"],
            arguments=row["arguments"],
            created_by=row["created_by"],
            paused=row["paused"],
            paused_at=row["paused_at"],
            next_run_at=row["next_run_at"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class Tick:
    """One tick of a schedule: when, whether cron or runScheduleNow made it, and what
    became of it (PENDING while it is being fired)."""

    id: int
    schedule_id: str
    tick_at: datetime
    kind: str
    outcome: str
    reason: str | None
    job_id: str | None

    @classmethod
    def from_row(cls, row: Any) -> Tick:
        return cls(
            id=row["id"],
            schedule_id=str(row["schedule_id"]),
            tick_at=row["tick_at"],
            kind=row["kind"],
            outcome=row["outcome"],
            reason=row["reason"],
            job_id=str(row["job_id"]) if row["job_id"] is not None else None,
        )


async def insert_schedule(
    conn: asyncpg.Connection,
    *,
    name: str,
    cron: str,
    timezone: str,
    overlap: str,
    catchup_window_seconds: int,
    operation: str,
    arguments: dict[str, Any],
    created_by: str | None,
    next_run_at: datetime,
) -> Schedule:
    row = await conn.fetchrow(
        """INSERT INTO schedules (name, cron, timezone, overlap, catchup_window_seconds,
                                  operation, arguments, created_by, next_run_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
        name,
        cron,
        timezone,
        overlap,
        catchup_window_seconds,
        operation,
        arguments,
        created_by,
        next_run_at,
    )
    return Schedule.from_row(row)


async def get_schedule(
    conn: asyncpg.Connection, schedule_id: str, *, lock: bool = False
) -> Schedule | None:
    row = await conn.fetchrow(
        "SELECT * FROM schedules WHERE id = $1" + (" FOR UPDATE" if lock else ""), schedule_id
    )
    return Schedule.from_row(row) if row else None


async def list_schedules(conn: asyncpg.Connection) -> list[Schedule]:
    rows = await conn.fetch("SELECT * FROM schedules ORDER BY created_at, id")
    return [Schedule.from_row(r) for r in rows]


async def set_paused(
    conn: asyncpg.Connection, schedule_id: str, *, paused: bool, next_run_at: datetime | None
) -> Schedule | None:
    """Pause or resume; a resumed schedule's next tick is `next_run_at`."""
    row = await conn.fetchrow(
        """UPDATE schedules SET paused = $2, next_run_at = coalesce($3, next_run_at),
             paused_at = CASE WHEN $2 THEN coalesce(paused_at, now()) END, updated_at = now()
           WHERE id = $1 RETURNING *""",
        schedule_id,
        paused,
        next_run_at,
    )
    return Schedule.from_row(row) if row else None


async def delete_schedule(conn: asyncpg.Connection, schedule_id: str) -> bool:
    deleted = await conn.fetchval("DELETE FROM schedules WHERE id = $1 RETURNING 1", schedule_id)
    return deleted is not None


async def tenants_with_due_schedules(conn: asyncpg.Connection, now: datetime) -> list[str]:
    """Every tenant with a schedule whose time has come, a buffered tick or one being
    fired (a SECURITY DEFINER function of the migrations, since it spans every tenant)."""
    rows = await conn.fetch("SELECT tenant_id FROM tenants_with_due_schedules($1)", now)
    return [str(r["tenant_id"]) for r in rows]


async def lock_due_schedules(
    conn: asyncpg.Connection, now: datetime, *, limit: int
) -> list[Schedule]:
    """The tenant's unpaused schedules due at `now`, locked; those another worker holds
    are passed over (it is handling them)."""
    rows = await conn.fetch(
        """SELECT * FROM schedules WHERE NOT paused AND next_run_at <= $1
           ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [Schedule.from_row(r) for r in rows]


async def set_next_run(conn: asyncpg.Connection, schedule_id: str, next_run_at: datetime) -> None:
    await conn.execute(
        "UPDATE schedules SET next_run_at = $2, updated_at = now() WHERE id = $1",
        schedule_id,
        next_run_at,
    )


async def insert_ticks(
    conn: asyncpg.Connection,
    schedule_id: str,
    ticks: list[tuple[datetime, str, str | None]],
    *,
    kind: str = "CRON",
    job_id: str | None = None,
) -> list[Tick]:
    """Ticks (time, outcome, reason) not recorded yet; those already recorded are left as
    they are and not returned, so a tick is claimed once."""
    rows = await conn.fetch(
        """INSERT INTO schedule_ticks (schedule_id, tick_at, outcome, reason, kind, job_id)
           SELECT $1, t.at, t.outcome, t.reason, $5, $6
           FROM unnest($2::timestamptz[], $3::text[], $4::text[]) AS t(at, outcome, reason)
           ON CONFLICT (schedule_id, tick_at) DO NOTHING
           RETURNING *""",
        schedule_id,
        [t[0] for t in ticks],
        [t[1] for t in ticks],
        [t[2] for t in ticks],
        kind,
        job_id,
    )
    return sorted((Tick.from_row(r) for r in rows), key=lambda t: t.tick_at)


async def finish_tick(
    conn: asyncpg.Connection,
    tick_id: int,
    *,
    outcome: str,
    reason: str | None = None,
    job_id: str | None = None,
) -> None:
    await conn.execute(
        """UPDATE schedule_ticks SET outcome = $2, reason = $3, job_id = $4, updated_at = now()
           WHERE id = $1""",
        tick_id,
        outcome,
        reason,
        job_id,
    )


async def last_job(conn: asyncpg.Connection, schedule_id: str) -> JobState | None:
    """The job the schedule made last (cron or runScheduleNow)."""
    row = await conn.fetchrow(
        """SELECT j.* FROM schedule_ticks t JOIN jobs j ON j.id = t.job_id
           WHERE t.schedule_id = $1 ORDER BY j.created_at DESC, j.id DESC LIMIT 1""",
        schedule_id,
    )
    return JobState.from_row(row) if row else None


async def unfinished_jobs(conn: asyncpg.Connection, schedule_id: str) -> list[JobState]:
    """The schedule's jobs not yet in a terminal status."""
    rows = await conn.fetch(
        """SELECT j.* FROM schedule_ticks t JOIN jobs j ON j.id = t.job_id
           WHERE t.schedule_id = $1
             AND j.status NOT IN ('CANCELLED', 'SUCCEEDED', 'PARTIAL', 'FAILED')
           ORDER BY j.created_at""",
        schedule_id,
    )
    return [JobState.from_row(r) for r in rows]


async def has_buffered(conn: asyncpg.Connection, schedule_id: str, *, besides: int) -> bool:
    found = await conn.fetchval(
        """SELECT 1 FROM schedule_ticks
           WHERE schedule_id = $1 AND outcome = 'BUFFERED' AND id <> $2 LIMIT 1""",
        schedule_id,
        besides,
    )
    return found is not None


async def lock_waiting_ticks(
    conn: asyncpg.Connection, stale: timedelta, *, limit: int
) -> list[Tick]:
    """The tenant's buffered ticks, and pending ones claimed longer than `stale` ago (their
    worker died while firing them), locked; those another worker holds are passed over.
    `stale` is measured on the database's clock, as the claim's time was."""
    rows = await conn.fetch(
        """SELECT * FROM schedule_ticks
           WHERE outcome = 'BUFFERED' OR (outcome = 'PENDING' AND updated_at < now() - $1::interval)
           ORDER BY tick_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        stale,
        limit,
    )
    return [Tick.from_row(r) for r in rows]


async def touch_tick(conn: asyncpg.Connection, tick_id: int) -> None:
    """Mark a tick PENDING again, now: this worker fires it."""
    await conn.execute(
        "UPDATE schedule_ticks SET outcome = 'PENDING', updated_at = now() WHERE id = $1",
        tick_id,
    )


async def list_ticks(conn: asyncpg.Connection, schedule_id: str, *, limit: int) -> list[Tick]:
    rows = await conn.fetch(
        """SELECT * FROM schedule_ticks WHERE schedule_id = $1
           ORDER BY tick_at DESC, id DESC LIMIT $2""",
        schedule_id,
        limit,
    )
    return [Tick.from_row(r) for r in rows]


async def schedule_jobs(
    conn: asyncpg.Connection,
    schedule_id: str,
    *,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[JobState]:
    """The schedule's jobs, newest first; `before` is the (created_at, id) of the last seen."""
    rows = await conn.fetch(
        """SELECT j.* FROM schedule_ticks t JOIN jobs j ON j.id = t.job_id
           WHERE t.schedule_id = $1
             AND ($2::timestamptz IS NULL OR (j.created_at, j.id) < ($2, $3::uuid))
           ORDER BY j.created_at DESC, j.id DESC LIMIT $4""",
        schedule_id,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [JobState.from_row(r) for r in rows]


async def count_schedule_jobs(conn: asyncpg.Connection, schedule_id: str) -> int:
    count: int = await conn.fetchval(
        """SELECT count(DISTINCT job_id) FROM schedule_ticks
           WHERE schedule_id = $1 AND job_id IS NOT NULL""",
        schedule_id,
    )
    return count


async def remove_expired_ticks(conn: asyncpg.Connection, retention: timedelta) -> int:
    """Remove every tenant's ticks older than `retention` (a SECURITY DEFINER function)."""
    removed: int = await conn.fetchval("SELECT remove_expired_schedule_ticks($1)", retention)
    return removed
