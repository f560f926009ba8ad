"""Schedules: a bulk mutation and its arguments, run on a cron expression in a time zone.
Creating, pausing, resuming, deleting and reading them; firing their ticks is in
`schedule_ticks`.

The mutation is run through its own resolver (`MutationRunner`, given by the GraphQL
layer), so stored arguments are checked and turned into a selection and parameters
exactly as the mutation's are."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bulkops.db import schedules as schedules_db
from bulkops.db.pool import tenant_transaction
from bulkops.db.schedules import Schedule, Tick
from bulkops.errors import InputError, NotFoundError
from bulkops.models import JobState
from bulkops.services.container import Services
from bulkops.services.pages import Page
from bulkops.services.schedule_times import check_cron, next_runs, ticks_after, zone

__all__ = ["MutationRunner", "OverlapPolicy", "Schedule", "ScheduleSpec", "Tick"]

MAX_CATCHUP_SECONDS = 7 * 24 * 3600
MAX_NAME = 200


class OverlapPolicy(StrEnum):
    """What a tick does while the schedule's previous job has not ended."""

    SKIP = "SKIP"
    BUFFER_ONE = "BUFFER_ONE"
    CANCEL_OTHER = "CANCEL_OTHER"
    ALLOW = "ALLOW"


@dataclass(frozen=True)
class ScheduleSpec:
    """What createSchedule is given."""

    name: str
    cron: str
    timezone: str = "UTC"
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window_seconds: int = 300
    operation: str = ""
    # As the mutation takes them; the runner checks their shape.
    arguments: Any = field(default_factory=dict)


class MutationRunner(Protocol):
    """Runs a bulk mutation from its stored arguments, as a client would call it."""

    async def count(
        self,
        services: Services,
        tenant_id: str,
        *,
        subject: str | None,
        operation: str,
        arguments: Any,
    ) -> int:
        """Check `arguments` as `operation` takes them and count the items they select
        now, changing nothing. Raises InputError with the field path from ScheduleInput
        (["input", "arguments", ...])."""

    async def queue(
        self, services: Services, schedule: Schedule, *, idempotency_key: str
    ) -> JobState:
        """Queue the schedule's mutation as a job under `idempotency_key`. Raises
        InputError when the mutation refuses its arguments now."""


async def create_schedule(
    services: Services,
    tenant_id: str,
    spec: ScheduleSpec,
    runner: MutationRunner,
    *,
    created_by: str | None,
    now: datetime | None = None,
) -> tuple[Schedule, int]:
    """The new schedule and how many items its arguments select now. InputError (with the
    field) on anything wrong; nothing is stored then."""
    name = spec.name.strip()
    if not name or len(name) > MAX_NAME:
        raise InputError(
            f"A schedule's name has 1 to {MAX_NAME} characters.",
            code="INVALID_NAME",
            field=["input", "name"],
        )
    cron = check_cron(spec.cron, ["input", "cron"])
    tz = zone(spec.timezone, ["input", "timezone"])
    if not 0 <= spec.catchup_window_seconds <= MAX_CATCHUP_SECONDS:
        raise InputError(
            f"The catch-up window is 0 to {MAX_CATCHUP_SECONDS} seconds (7 days).",
            code="INVALID_CATCHUP_WINDOW",
            field=["input", "catchupWindowSeconds"],
        )
    if spec.operation not in services.operations:
        raise InputError(
            f"There is no bulk mutation {spec.operation!r}; Query.operations lists them.",
            code="UNKNOWN_OPERATION",
            field=["input", "operation"],
        )
    matched = await runner.count(
        services,
        tenant_id,
        subject=created_by,
        operation=spec.operation,
        arguments=spec.arguments,
    )
    now = now or datetime.now(UTC)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        schedule = await schedules_db.insert_schedule(
            conn,
            name=name,
            cron=cron,
            timezone=spec.timezone,
            overlap=spec.overlap.value,
            catchup_window_seconds=spec.catchup_window_seconds,
            operation=spec.operation,
            arguments=spec.arguments,
            created_by=created_by,
            next_run_at=next(ticks_after(cron, tz, now)),
        )
    return schedule, matched


def upcoming(schedule: Schedule, count: int, *, now: datetime | None = None) -> list[datetime]:
    """The schedule's next `count` ticks after now, in its zone (paused or not)."""
    tz = zone(schedule.timezone, ["timezone"])
    return next_runs(schedule.cron, tz, now or datetime.now(UTC), count)


async def get_schedule(services: Services, tenant_id: str, schedule_id: str) -> Schedule | None:
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await schedules_db.get_schedule(conn, schedule_id)


async def list_schedules(services: Services, tenant_id: str) -> list[Schedule]:
    """The tenant's schedules, oldest first."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await schedules_db.list_schedules(conn)


def not_found() -> NotFoundError:
    return NotFoundError("No schedule has this id.", code="NOT_FOUND", field=["id"])


async def pause_schedule(services: Services, tenant_id: str, schedule_id: str) -> Schedule:
    """No tick fires until resumeSchedule; a job already running goes on."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        schedule = await schedules_db.set_paused(conn, schedule_id, paused=True, next_run_at=None)
    if schedule is None:
        raise not_found()
    return schedule


async def resume_schedule(
    services: Services, tenant_id: str, schedule_id: str, *, now: datetime | None = None
) -> Schedule:
    """Ticks fire again. Of the ticks that fell during the pause, only the latest within
    the catch-up window fires; older ones are neither fired nor recorded, nor are ticks
    from before the pause."""
    now = now or datetime.now(UTC)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        current = await schedules_db.get_schedule(conn, schedule_id, lock=True)
        if current is None:
            raise not_found()
        if not current.paused:
            return current
        tz = zone(current.timezone, ["timezone"])
        since = now - timedelta(seconds=current.catchup_window_seconds)
        if current.paused_at is not None:
            since = max(since, current.paused_at)
        first = next(ticks_after(current.cron, tz, since - timedelta(microseconds=1)))
        schedule = await schedules_db.set_paused(conn, schedule_id, paused=False, next_run_at=first)
    assert schedule is not None
    return schedule


async def delete_schedule(services: Services, tenant_id: str, schedule_id: str) -> None:
    """The schedule and its ticks go; the jobs it made stay."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        deleted = await schedules_db.delete_schedule(conn, schedule_id)
    if not deleted:
        raise not_found()


async def last_job(services: Services, tenant_id: str, schedule_id: str) -> JobState | None:
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await schedules_db.last_job(conn, schedule_id)


async def recent_ticks(
    services: Services, tenant_id: str, schedule_id: str, *, limit: int
) -> list[Tick]:
    """The schedule's latest ticks, newest first."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await schedules_db.list_ticks(conn, schedule_id, limit=limit)


async def schedule_jobs(
    services: Services,
    tenant_id: str,
    schedule_id: str,
    *,
    before: tuple[datetime, str] | None,
    limit: int,
) -> Page[JobState]:
    """The jobs the schedule made, newest first."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        rows = await schedules_db.schedule_jobs(conn, schedule_id, before=before, limit=limit + 1)
        total = await schedules_db.count_schedule_jobs(conn, schedule_id)
    return Page.of(rows, limit=limit, total=total)


async def remove_expired_ticks(services: Services) -> int:
    """Ticks older than the job retention go (their jobs are gone by then too)."""
    retention = timedelta(days=services.settings.job_retention_days)
    async with services.pool.acquire() as conn:
        return await schedules_db.remove_expired_ticks(conn, retention)
