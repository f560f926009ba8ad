"""Schedules: create, pause, resume, run now, delete, list."""

from __future__ import annotations

import uuid

import strawberry

from bulkops.errors import InputError
from bulkops.graphql.resolvers.bulk import rejected
from bulkops.graphql.scheduled import SchemaRunner
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.jobs import Job
from bulkops.graphql.types.results import Deleted, DeleteResult, JobQueued
from bulkops.graphql.types.schedules import (
    CreateScheduleResult,
    RunScheduleResult,
    Schedule,
    ScheduleInput,
    ScheduleResult,
)
from bulkops.services import schedule_ticks
from bulkops.services import schedules as schedule_service
from bulkops.services.schedules import ScheduleSpec


def _schedule_id(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InputError("No schedule has this id.", code="NOT_FOUND", field=["id"]) from None


async def schedules(info: Info) -> list[Schedule]:
    rows = await schedule_service.list_schedules(info.context.services, info.context.tenant)
    return [Schedule.from_row(r) for r in rows]


async def create_schedule(info: Info, input: ScheduleInput) -> CreateScheduleResult:
    spec = ScheduleSpec(
        name=input.name,
        cron=input.cron,
        timezone=input.timezone,
        overlap=input.overlap,
        catchup_window_seconds=input.catchup_window_seconds,
        operation=input.operation,
        arguments=input.arguments,
    )
    try:
        row, matched = await schedule_service.create_schedule(
            info.context.services,
            info.context.tenant,
            spec,
            SchemaRunner(info.schema),
            created_by=info.context.subject,
        )
    except InputError as exc:
        return rejected(exc)
    return Schedule.from_row(row, matched=matched)


async def pause_schedule(info: Info, id: strawberry.ID) -> ScheduleResult:
    try:
        row = await schedule_service.pause_schedule(
            info.context.services, info.context.tenant, _schedule_id(id)
        )
    except InputError as exc:
        return rejected(exc)
    return Schedule.from_row(row)


async def resume_schedule(info: Info, id: strawberry.ID) -> ScheduleResult:
    try:
        row = await schedule_service.resume_schedule(
            info.context.services, info.context.tenant, _schedule_id(id)
        )
    except InputError as exc:
        return rejected(exc)
    return Schedule.from_row(row)


async def run_schedule_now(info: Info, id: strawberry.ID) -> RunScheduleResult:
    try:
        job = await schedule_ticks.run_now(
            info.context.services,
            info.context.tenant,
            _schedule_id(id),
            SchemaRunner(info.schema),
        )
    except InputError as exc:
        return rejected(exc)
    return JobQueued(job=Job.from_state(job))


async def delete_schedule(info: Info, id: strawberry.ID) -> DeleteResult:
    try:
        await schedule_service.delete_schedule(
            info.context.services, info.context.tenant, _schedule_id(id)
        )
    except InputError as exc:
        return rejected(exc)
    return Deleted(id=id)
