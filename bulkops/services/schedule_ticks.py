"""Firing schedules' ticks, each exactly once however many workers run.

A pass locks the due schedules (`FOR UPDATE SKIP LOCKED`), claims their ticks as rows unique
on (schedule, tick time) and moves each schedule's next run past now, in one transaction;
the job of a tick is then queued under the idempotency key `schedule:<id>:<tick time>`, so
even a tick fired again after its worker died makes one job. The overlap policy decides
what a tick does while the schedule's previous job has not ended."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bulkops.db import schedules as schedules_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError
from bulkops.models import JobState
from bulkops.services import jobs as job_service
from bulkops.services.container import Services
from bulkops.services.schedule_times import due_ticks, zone
from bulkops.services.schedules import (
    MutationRunner,
    OverlapPolicy,
    Schedule,
    Tick,
    get_schedule,
    not_found,
)

log = logging.getLogger(__name__)

# Schedules (and waiting ticks) one pass takes per tenant; the rest wait a second.
PASS_LIMIT = 100
# A tick left PENDING this long lost its worker while being fired: another fires it
# (under the same idempotency key, so still one job).
STALE_PENDING = timedelta(seconds=60)


@dataclass
class PassReport:
    """What one pass of the tick loop did."""

    fired: int = 0
    skipped: int = 0
    buffered: int = 0
    rejected: int = 0


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
        raise not_found()
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
