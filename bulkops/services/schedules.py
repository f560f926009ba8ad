"""Schedules: a bulk mutation and its arguments, run on a cron expression in a time zone.

Each tick fires exactly once however many workers run: a pass locks the due schedules
(`FOR UPDATE SKIP LOCKED`), claims their ticks as rows unique on (schedule, tick time) and
moves the schedule's next run past now in one transaction; the job of a tick is then
queued under the idempotency key `schedule:<id>:<tick time>`, so even a tick fired again
after its worker died makes one job.

The mutation is run through its own resolver (`MutationRunner`, given by the GraphQL
layer), so stored arguments are checked and turned into a selection and parameters
exactly as the mutation's are."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bulkops.db import schedules as schedules_db
from bulkops.db.pool import tenant_transaction
from bulkops.db.schedules import Schedule, Tick
from bulkops.errors import InputError, NotFoundError
from bulkops.models import JobState
from bulkops.services import jobs as job_service
from bulkops.services.container import Services
from bulkops.services.pages import Page
from bulkops.services.schedule_times import check_cron, due_ticks, next_runs, ticks_after, zone

__all__ = ["MutationRunner", "OverlapPolicy", "Schedule", "ScheduleSpec", "Tick"]

log = logging.getLogger(__name__)

# Schedules (and waiting ticks) one pass takes per tenant; the rest wait a second.
PASS_LIMIT = 100
# A tick left PENDING this long lost its worker while being fired: another fires it
# (under the same idempotency key, so still one job).
STALE_PENDING = timedelta(seconds=60)
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


@dataclass
class PassReport:
    """What one pass of the tick loop did."""

    fired: int = 0
    skipped: int = 0
    buffered: int = 0
    rejected: int = 0


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


def _not_found() -> NotFoundError:
    return NotFoundError("No schedule has this id.", code="NOT_FOUND", field=["id"])


async def pause_schedule(services: Services, tenant_id: str, schedule_id: str) -> Schedule:
    """No tick fires until resumeSchedule; a job already running goes on."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        schedule = await schedules_db.set_paused(conn, schedule_id, paused=True, next_run_at=None)
    if schedule is None:
        raise _not_found()
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
            raise _not_found()
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
        raise _not_found()


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


def idempotency_key(schedule_id: str, tick_at: datetime) -> str:
    """The key of a tick's job: one job per tick, whoever fires it and how often."""
    return f"schedule:{schedule_id}:{tick_at.astimezone(UTC).isoformat()}"


async def run_now(
    services: Services,
    tenant_id: str,
    schedule_id: str,
    runner: MutationRunner,
    *,
    now: datetime | None = None,
) -> JobState:
    """Queue the schedule's job now, paused or not. It obeys the overlap policy: while the
    previous job runs, SKIP and BUFFER_ONE refuse (SCHEDULE_BUSY), CANCEL_OTHER cancels it
    first, ALLOW runs alongside. Nothing is recorded when refused."""
    now = now or datetime.now(UTC)
    schedule = await get_schedule(services, tenant_id, schedule_id)
    if schedule is None:
        raise _not_found()
    busy = await _running_jobs(services, schedule)
    if busy and schedule.overlap in (OverlapPolicy.SKIP, OverlapPolicy.BUFFER_ONE):
        raise InputError(
            f"The schedule's previous job {busy[-1].id} has not ended, and its overlap "
            f"policy is {schedule.overlap}.",
            code="SCHEDULE_BUSY",
            field=["id"],
        )
    if busy and schedule.overlap == OverlapPolicy.CANCEL_OTHER:
        await _cancel(services, schedule, busy)
    job = await runner.queue(services, schedule, idempotency_key=idempotency_key(schedule.id, now))
    async with tenant_transaction(services.pool, tenant_id) as conn:
        await schedules_db.insert_ticks(
            conn, schedule.id, [(now, "FIRED", None)], kind="MANUAL", job_id=job.id
        )
    return job


async def _running_jobs(services: Services, schedule: Schedule) -> list[JobState]:
    async with tenant_transaction(services.pool, schedule.tenant_id) as conn:
        return await schedules_db.unfinished_jobs(conn, schedule.id)


async def _cancel(services: Services, schedule: Schedule, jobs: list[JobState]) -> None:
    for job in jobs:
        try:
            await job_service.cancel_job(services.pool, services.redis, schedule.tenant_id, job.id)
        except InputError:
            # It ended meanwhile.
            continue


def plan_ticks(
    schedule: Schedule, now: datetime
) -> tuple[list[tuple[datetime, str, str | None]], datetime]:
    """The due ticks of a schedule at `now`, each with what becomes of it, and its next
    run: the latest tick within the catch-up window is PENDING (it fires), older ones
    within the window are SKIPPED as COALESCED, those beyond it as MISSED."""
    tz = zone(schedule.timezone, ["timezone"])
    due, following = due_ticks(schedule.cron, tz, schedule.next_run_at, now)
    window = timedelta(seconds=schedule.catchup_window_seconds)
    within = [t for t in due if now - t <= window]
    latest = within[-1] if within else None
    planned: list[tuple[datetime, str, str | None]] = []
    for tick in due:
        if tick == latest:
            planned.append((tick, "PENDING", None))
        else:
            planned.append((tick, "SKIPPED", "MISSED" if now - tick > window else "COALESCED"))
    return planned, following


async def tick(services: Services, runner: MutationRunner, *, now: datetime) -> PassReport:
    """One pass of the tick loop at `now`: every due tick of every tenant claimed once,
    then fired, skipped or buffered as its schedule's overlap policy says; buffered ticks
    whose previous job ended fire."""
    report = PassReport()
    async with services.pool.acquire() as conn:
        tenants = await schedules_db.tenants_with_due_schedules(conn, now)
    for tenant_id in tenants:
        claimed: list[tuple[Schedule, Tick]] = []
        async with tenant_transaction(services.pool, tenant_id) as conn:
            for schedule in await schedules_db.lock_due_schedules(conn, now, limit=PASS_LIMIT):
                planned, following = plan_ticks(schedule, now)
                for made in await schedules_db.insert_ticks(conn, schedule.id, planned):
                    if made.outcome == "PENDING":
                        claimed.append((schedule, made))
                    else:
                        report.skipped += 1
                await schedules_db.set_next_run(conn, schedule.id, following)
            for waiting in await schedules_db.lock_waiting_ticks(
                conn, STALE_PENDING, limit=PASS_LIMIT
            ):
                schedule_of = await schedules_db.get_schedule(conn, waiting.schedule_id)
                if schedule_of is None or (
                    waiting.outcome == "BUFFERED"
                    and await schedules_db.unfinished_jobs(conn, schedule_of.id)
                ):
                    continue
                await schedules_db.touch_tick(conn, waiting.id)
                claimed.append((schedule_of, waiting))
        for schedule, claim in claimed:
            await _fire(services, runner, schedule, claim, report)
    return report


async def _fire(
    services: Services, runner: MutationRunner, schedule: Schedule, claim: Tick, report: PassReport
) -> None:
    """Fire a claimed tick as the overlap policy says, and record what became of it."""
    outcome, reason, job_id = "FIRED", None, None
    busy = [] if claim.outcome == "BUFFERED" else await _running_jobs(services, schedule)
    if busy and schedule.overlap == OverlapPolicy.SKIP:
        outcome, reason = "SKIPPED", "OVERLAP"
    elif busy and schedule.overlap == OverlapPolicy.BUFFER_ONE:
        async with tenant_transaction(services.pool, schedule.tenant_id) as conn:
            full = await schedules_db.has_buffered(conn, schedule.id, besides=claim.id)
        outcome, reason = ("SKIPPED", "BUFFER_FULL") if full else ("BUFFERED", None)
    else:
        if busy and schedule.overlap == OverlapPolicy.CANCEL_OTHER:
            await _cancel(services, schedule, busy)
        try:
            job = await runner.queue(
                services, schedule, idempotency_key=idempotency_key(schedule.id, claim.tick_at)
            )
            job_id = job.id
        except InputError as exc:
            outcome, reason = "REJECTED", f"{exc.code}: {exc.message}"
    async with tenant_transaction(services.pool, schedule.tenant_id) as conn:
        await schedules_db.finish_tick(
            conn, claim.id, outcome=outcome, reason=reason, job_id=job_id
        )
    if outcome == "FIRED":
        report.fired += 1
    elif outcome == "BUFFERED":
        report.buffered += 1
    elif outcome == "REJECTED":
        report.rejected += 1
        log.warning("schedule %s: tick refused: %s", schedule.id, reason)
    else:
        report.skipped += 1


async def remove_expired_ticks(services: Services) -> int:
    """Ticks older than the job retention go (their jobs are gone by then too)."""
    retention = timedelta(days=services.settings.job_retention_days)
    async with services.pool.acquire() as conn:
        return await schedules_db.remove_expired_ticks(conn, retention)
