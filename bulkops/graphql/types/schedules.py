"""Schedules as the API shows them: a bulk mutation run on a cron expression in a time
zone, its next runs, its ticks and the jobs it made."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

import strawberry
from strawberry.scalars import JSON

from bulkops.errors import InputError
from bulkops.graphql.paging import page_size, time_id_cursor
from bulkops.graphql.scheduled import SchemaRunner
from bulkops.graphql.types.common import Connection, Info, connection, encode_cursor
from bulkops.graphql.types.jobs import Job
from bulkops.graphql.types.results import JobQueued, Rejected
from bulkops.services import job_reads
from bulkops.services import schedules as schedule_service
from bulkops.services.schedules import OverlapPolicy, Tick

strawberry.enum(
    OverlapPolicy,
    description="What a tick does while the schedule's previous job has not ended: SKIP "
    "it (recorded as skipped, reason OVERLAP), BUFFER_ONE (it waits and fires when the "
    "previous job ends; a further tick meanwhile is skipped, BUFFER_FULL), CANCEL_OTHER "
    "(cancel the running job, start the new one), ALLOW (run alongside).",
)

MAX_NEXT_RUNS = 100
MAX_TICKS = 500


@strawberry.input(description="A new schedule.")
class ScheduleInput:
    name: str = strawberry.field(description="What to call it: 1 to 200 characters.")
    cron: str = strawberry.field(
        description='5 fields: minute hour day-of-month month day-of-week, e.g. "30 2 * * *" '
        "(02:30 every day). Rejected code: INVALID_CRON."
    )
    timezone: str = strawberry.field(
        default="UTC",
        description="The IANA time zone the cron expression is read in, e.g. Europe/Berlin. "
        "Rejected code: UNKNOWN_TIMEZONE.",
    )
    overlap: OverlapPolicy = strawberry.field(
        default=OverlapPolicy.SKIP,
        description="What a tick does while the previous job runs (default SKIP).",
    )
    catchup_window_seconds: int = strawberry.field(
        default=300,
        description="A tick missed (no worker ran) fires late if at most this old; only the "
        "latest such tick fires, older ones are recorded as skipped (MISSED). 0 to 604800. "
        "Rejected code: INVALID_CATCHUP_WINDOW.",
    )
    operation: str = strawberry.field(
        description="A bulk mutation's name, e.g. setProductStatus. Rejected code: "
        "UNKNOWN_OPERATION."
    )
    arguments: JSON = strawberry.field(
        description="A bulk mutation's name and its arguments, as that mutation takes them, "
        'e.g. {"selection": {"filter": {"status": ["DRAFT"]}}, "status": "ARCHIVED"}. '
        "Checked now by the mutation itself; a refusal names the field inside arguments. "
        "options may give priority and errorPolicy (mode, dryRun and idempotencyKey are "
        "the schedule's). Uploads are not schedulable (UPLOAD_NOT_SCHEDULABLE)."
    )


@strawberry.type(description="One tick of a schedule and what became of it.")
class ScheduleTick:
    at: datetime = strawberry.field(
        description="The tick's time (runScheduleNow: when it was asked)."
    )
    kind: str = strawberry.field(description="CRON, or MANUAL for runScheduleNow.")
    outcome: str = strawberry.field(
        description="FIRED (its job made), SKIPPED (see reason), BUFFERED (waiting for the "
        "previous job), REJECTED (the mutation refused its arguments now; see reason), "
        "PENDING (being fired)."
    )
    reason: str | None = strawberry.field(
        description="Why skipped: OVERLAP, MISSED (older than the catch-up window), "
        "COALESCED (a later missed tick fired instead), BUFFER_FULL; or the refusal."
    )
    job_id: strawberry.Private[str | None]

    @strawberry.field(description="The job this tick made, while it is kept.")
    async def job(self, info: Info) -> Job | None:
        if self.job_id is None:
            return None
        state = await job_reads.get_job(
            info.context.services.pool, info.context.tenant, self.job_id
        )
        return Job.from_state(state) if state else None

    @classmethod
    def from_tick(cls, tick: Tick) -> ScheduleTick:
        return cls(
            at=tick.tick_at,
            kind=tick.kind,
            outcome=tick.outcome,
            reason=tick.reason,
            job_id=tick.job_id,
        )


@strawberry.type(description="A bulk mutation run on a cron expression in a time zone.")
class Schedule:
    id: strawberry.ID = strawberry.field(description="The schedule's id (a UUID).")
    name: str = strawberry.field(description="What it is called.")
    cron: str = strawberry.field(description="Its 5-field cron expression.")
    timezone: str = strawberry.field(description="The IANA time zone its cron is read in.")
    overlap: OverlapPolicy = strawberry.field(
        description="What a tick does while the previous job runs."
    )
    catchup_window_seconds: int = strawberry.field(
        description="How late a missed tick may still fire."
    )
    operation: str = strawberry.field(description="The bulk mutation it runs.")
    arguments: JSON = strawberry.field(description="The mutation's arguments, as stored.")
    paused: bool = strawberry.field(description="Whether its ticks are held.")
    created_by: str | None = strawberry.field(
        description="Who created it; its jobs are created by the same."
    )
    created_at: datetime = strawberry.field(description="When it was created.")
    row: strawberry.Private[schedule_service.Schedule]
    counted: strawberry.Private[int | None] = None

    @classmethod
    def from_row(cls, row: schedule_service.Schedule, *, matched: int | None = None) -> Schedule:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            cron=row.cron,
            timezone=row.timezone,
            overlap=OverlapPolicy(row.overlap),
            catchup_window_seconds=row.catchup_window_seconds,
            operation=row.operation,
            arguments=cast(JSON, row.arguments),
            paused=row.paused,
            created_by=row.created_by,
            created_at=row.created_at,
            row=row,
            counted=matched,
        )

    @strawberry.field(
        description="How many items its arguments select now (a dry run's count, nothing "
        "changes); null when the mutation refuses its arguments now."
    )
    async def matched_now(self, info: Info) -> int | None:
        if self.counted is not None:
            return self.counted
        row = self.row
        try:
            return await SchemaRunner(info.schema).count(
                info.context.services,
                info.context.tenant,
                subject=row.created_by,
                operation=row.operation,
                arguments=row.arguments,
            )
        except InputError:
            return None

    @strawberry.field(
        description="Its next ticks after now, in its time zone (whether paused or not)."
    )
    def next_runs(
        self,
        count: Annotated[
            int, strawberry.argument(description=f"How many: 0 to {MAX_NEXT_RUNS}.")
        ] = 5,
    ) -> list[datetime]:
        return schedule_service.upcoming(self.row, max(0, min(count, MAX_NEXT_RUNS)))

    @strawberry.field(description="The job it made last (cron or runScheduleNow), while kept.")
    async def last_job(self, info: Info) -> Job | None:
        state = await schedule_service.last_job(
            info.context.services, info.context.tenant, self.row.id
        )
        return Job.from_state(state) if state else None

    @strawberry.field(description="The jobs it made, newest first, a page at a time.")
    async def jobs(
        self,
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description="Page size: 0 to 500 (default 50).")
        ] = 50,
        after: Annotated[
            str | None,
            strawberry.argument(description="The endCursor of the previous page."),
        ] = None,
    ) -> Connection[Job]:
        size = page_size(first)
        page = await schedule_service.schedule_jobs(
            info.context.services,
            info.context.tenant,
            self.row.id,
            before=time_id_cursor(after, "job"),
            limit=size,
        )
        return connection(
            page.rows,
            cursor=lambda r: encode_cursor("job", f"{r.created_at.isoformat()}|{r.id}"),
            node=Job.from_state,
            has_next=page.has_next,
            has_previous=after is not None,
            total=page.total,
        )

    @strawberry.field(
        description="Its latest ticks, newest first: fired, skipped (and why), buffered."
    )
    async def recent_ticks(
        self,
        info: Info,
        count: Annotated[int, strawberry.argument(description=f"How many: 0 to {MAX_TICKS}.")] = 20,
    ) -> list[ScheduleTick]:
        ticks = await schedule_service.recent_ticks(
            info.context.services,
            info.context.tenant,
            self.row.id,
            limit=max(0, min(count, MAX_TICKS)),
        )
        return [ScheduleTick.from_tick(t) for t in ticks]


CreateScheduleResult = Annotated[Schedule | Rejected, strawberry.union("CreateScheduleResult")]
ScheduleResult = Annotated[Schedule | Rejected, strawberry.union("ScheduleResult")]
RunScheduleResult = Annotated[JobQueued | Rejected, strawberry.union("RunScheduleResult")]
