"""The tick loop: every second a worker fires the schedules whose time has come
(`bulkops.services.schedules.tick`). arq runs each second's pass on one worker; were two
to run it, each tick would still fire once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bulkops.graphql.scheduled import SchemaRunner
from bulkops.graphql.schema import build_schema
from bulkops.services import schedules as schedule_service
from bulkops.services.container import Services
from bulkops.services.schedules import PassReport


def schedule_runner(services: Services) -> SchemaRunner:
    """Runs schedules' mutations through the schema of `services.operations`."""
    return SchemaRunner(build_schema(operations=services.operations))


async def fire_due_schedules(
    services: Services, runner: SchemaRunner, *, now: datetime | None = None
) -> PassReport:
    """One pass at `now` (default: the current time)."""
    return await schedule_service.tick(services, runner, now=now or datetime.now(UTC))


async def schedule_tick_task(ctx: dict[str, Any]) -> int:
    services: Services = ctx["deps"].services
    runner = ctx.get("schedule_runner")
    if runner is None:
        runner = ctx["schedule_runner"] = schedule_runner(services)
    report = await fire_due_schedules(services, runner)
    return report.fired
