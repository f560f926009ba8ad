"""The tick loop: every second a worker fires the schedules whose time has come
(`bulkops.services.schedules.tick`). arq runs each second's pass on one worker; were two
to run it, each tick would still fire once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bulkops.graphql.scheduled import SchemaRunner
from bulkops.graphql.schema import build_schema
from bulkops.operations import Registry
from bulkops.services import schedule_ticks
from bulkops.services import schedules as schedule_service
from bulkops.services.container import Services
from bulkops.services.schedule_ticks import PassReport

# One runner per registry a process serves (each arq job gets a copy of the worker's ctx,
# so the runner is kept here rather than there).
_RUNNERS: dict[int, tuple[Registry, SchemaRunner]] = {}


def schedule_runner(services: Services) -> SchemaRunner:
    """Runs schedules' mutations through the schema of `services.operations`."""
    kept = _RUNNERS.get(id(services.operations))
    if kept is None or kept[0] is not services.operations:
        kept = (services.operations, SchemaRunner(build_schema(operations=services.operations)))
        _RUNNERS[id(services.operations)] = kept
    return kept[1]


async def fire_due_schedules(
    services: Services, runner: SchemaRunner, *, now: datetime | None = None
) -> PassReport:
    """One pass at `now` (default: the current time)."""
    return await schedule_ticks.tick(services, runner, now=now or datetime.now(UTC))


async def schedule_tick_task(ctx: dict[str, Any]) -> int:
    services: Services = ctx["deps"].services
    report = await fire_due_schedules(services, schedule_runner(services))
    return report.fired


async def schedule_cleanup_task(ctx: dict[str, Any]) -> int:
    return await schedule_service.remove_expired_ticks(ctx["deps"].services)
