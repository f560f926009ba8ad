"""Schedules: created from GraphQL with their arguments checked by the mutation itself,
fired once per tick by the worker's pass, whatever the number of workers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis

from bulkops.config import Settings
from bulkops.db.pool import create_pool
from bulkops.outside import OutsideCalls
from bulkops.services.container import Services
from bulkops.services.schedule_ticks import PassReport
from bulkops.storage import Storage
from bulkops.tasks.schedules import fire_due_schedules, schedule_runner
from tests.support import GraphQLClient, Tenant, make_dataset, make_products, run_worker

CREATE = """
mutation($input: ScheduleInput!) {
  createSchedule(input: $input) {
    __typename
    ... on Schedule { id name timezone overlap paused matchedNow nextRuns(count: 3) }
    ... on Rejected { code message field }
  }
}"""
SCHEDULE = """
fragment S on Schedule {
  id paused matchedNow
  lastJob { id status operation }
  jobs(first: 10) { totalCount edges { node { id } } }
  recentTicks(count: 50) { at kind outcome reason job { id } }
}
query { schedules { ...S } }"""
ACTION = """
mutation($id: ID!) {{
  {name}(id: $id) {{ __typename ... on Rejected {{ code field }} {shape} }}
}}"""
SHAPES = {
    "pauseSchedule": "... on Schedule { id paused }",
    "resumeSchedule": "... on Schedule { id paused }",
    "runScheduleNow": "... on JobQueued { job { id status operation } }",
    "deleteSchedule": "... on Deleted { id }",
}


async def act(gql: GraphQLClient, name: str, schedule_id: str) -> dict[str, Any]:
    document = ACTION.format(name=name, shape=SHAPES[name])
    answer: dict[str, Any] = (await gql(document, {"id": schedule_id}))[name]
    return answer


ARCHIVE_DRAFTS = {"selection": {"filter": {"status": ["DRAFT"]}}, "status": "ARCHIVED"}


def schedule_input(**given: Any) -> dict[str, Any]:
    return {
        "name": "archive drafts",
        "cron": "* * * * *",
        "operation": "setProductStatus",
        "arguments": ARCHIVE_DRAFTS,
        **given,
    }


async def create(gql: GraphQLClient, **given: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await gql(CREATE, {"input": schedule_input(**given)}))[
        "createSchedule"
    ]
    return result


async def schedules(gql: GraphQLClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await gql(SCHEDULE))["schedules"]
    return found


@asynccontextmanager
async def worker_services(settings: Settings) -> AsyncIterator[Services]:
    """What a worker process has: its own pools."""
    pool = await create_pool(settings.database_url or "", role=settings.app_role, max_size=4)
    client = aioredis.from_url(settings.redis_url or "")
    redis = ArqRedis(connection_pool=client.connection_pool)
    services = Services(
        pool=pool,
        redis=redis,
        storage=Storage.from_settings(settings),
        settings=settings,
        outside=OutsideCalls(redis, settings),
    )
    try:
        yield services
    finally:
        await services.outside.aclose()
        await pool.close()
        await client.aclose()


async def next_run(owner: asyncpg.Connection, schedule_id: str) -> datetime:
    at: datetime = await owner.fetchval(
        "SELECT next_run_at FROM schedules WHERE id = $1", schedule_id
    )
    return at


async def tick(settings: Settings, now: datetime) -> PassReport:
    async with worker_services(settings) as services:
        return await fire_due_schedules(services, schedule_runner(services), now=now)


@pytest.mark.parametrize(
    ("given", "code", "field"),
    [
        ({"cron": "61 * * * *"}, "INVALID_CRON", ["input", "cron"]),
        ({"cron": "* * * * * *"}, "INVALID_CRON", ["input", "cron"]),
        ({"timezone": "Mars/Olympus"}, "UNKNOWN_TIMEZONE", ["input", "timezone"]),
        ({"operation": "launchRockets"}, "UNKNOWN_OPERATION", ["input", "operation"]),
        ({"operation": "createDataset"}, "UNKNOWN_OPERATION", ["input", "operation"]),
        ({"catchupWindowSeconds": -1}, "INVALID_CATCHUP_WINDOW", ["input", "catchupWindowSeconds"]),
        ({"name": " "}, "INVALID_NAME", ["input", "name"]),
        (
            {"arguments": {**ARCHIVE_DRAFTS, "status": "SHINY"}},
            "INVALID_INPUT",
            ["input", "arguments", "status"],
        ),
        (
            {"arguments": {"selection": {"filter": {"status": ["NOPE"]}}, "status": "ACTIVE"}},
            "INVALID_INPUT",
            ["input", "arguments", "selection", "filter", "status", "0"],
        ),
        (
            {"arguments": {"selection": {"filter": {}}}},
            "MISSING_ARGUMENT",
            ["input", "arguments", "status"],
        ),
        (
            {"arguments": {**ARCHIVE_DRAFTS, "colour": "red"}},
            "UNKNOWN_ARGUMENT",
            ["input", "arguments", "colour"],
        ),
        (
            {"arguments": {**ARCHIVE_DRAFTS, "options": {"dryRun": True}}},
            "OPTION_SET_BY_SCHEDULE",
            ["input", "arguments", "options", "dryRun"],
        ),
        (
            # Refused by the mutation's resolver and operation, not by GraphQL's types.
            {
                "operation": "updateProducts",
                "arguments": {"selection": {"filter": {}}, "patch": {"price": "-3"}},
            },
            "INVALID_PRICE",
            ["input", "arguments", "patch", "price"],
        ),
        (
            {
                "operation": "addProductsToDataset",
                "arguments": {"selection": {"filter": {}}, "datasetId": "999999"},
            },
            "NOT_FOUND",
            ["input", "arguments", "datasetId"],
        ),
        ({"operation": "importProducts", "arguments": {}}, "UPLOAD_NOT_SCHEDULABLE", None),
        ({"arguments": [1, 2]}, "INVALID_ARGUMENTS", ["input", "arguments"]),
    ],
)
async def test_refused_schedules_say_where_and_store_nothing(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    given: dict[str, Any],
    code: str,
    field: list[str] | None,
) -> None:
    refused = await create(gql, **given)
    assert refused["__typename"] == "Rejected", refused
    assert refused["code"] == code, refused
    if field is not None:
        assert refused["field"] == field
    else:
        assert refused["field"][:2] == ["input", "arguments"]
    assert await owner.fetchval("SELECT count(*) FROM schedules") == 0
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_new_schedule_counts_its_selection_and_lists_its_next_runs_in_its_zone(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    await make_products(owner, storage, tenant, 7, with_images=False)
    await make_products(owner, storage, tenant, 3, status="ACTIVE", sku_prefix="A")
    made = await create(gql, cron="30 2 * * *", timezone="Europe/Berlin")
    assert made["__typename"] == "Schedule", made
    assert (made["matchedNow"], made["overlap"], made["paused"]) == (7, "SKIP", False)
    runs = [datetime.fromisoformat(r) for r in made["nextRuns"]]
    assert len(runs) == 3
    assert all(r.strftime("%H:%M") == "02:30" for r in runs)
    assert all(r.utcoffset() in (timedelta(hours=1), timedelta(hours=2)) for r in runs)
    assert [b - a for a, b in itertools.pairwise(runs)] == [timedelta(days=1)] * 2
    # Counted, nothing changed.
    statuses = await owner.fetch("SELECT status, count(*) FROM products GROUP BY 1 ORDER BY 1")
    assert [(r["status"], r["count"]) for r in statuses] == [("ACTIVE", 3), ("DRAFT", 7)]
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_two_workers_fire_each_tick_once_and_skip_while_the_job_runs(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    made = await create(gql)
    first = await next_run(owner, made["id"])
    # Two workers' passes at the same instant, each with its own connections.
    reports = await asyncio.gather(
        tick(settings, first + timedelta(seconds=1)), tick(settings, first + timedelta(seconds=1))
    )
    assert sorted(r.fired for r in reports) == [0, 1]
    [shown] = await schedules(gql)
    assert shown["jobs"]["totalCount"] == 1
    job = shown["lastJob"]
    assert (job["operation"], job["status"]) == ("setProductStatus", "QUEUED")
    assert [(t["outcome"], t["job"]) for t in shown["recentTicks"]] == [
        ("FIRED", {"id": job["id"]})
    ]
    # The same tick again (a late worker): nothing new.
    again = await tick(settings, first + timedelta(seconds=2))
    assert again.fired == 0

    # The next minute's tick, while the job has not run: skipped under SKIP.
    await tick(settings, first + timedelta(seconds=61))
    [shown] = await schedules(gql)
    assert [(t["outcome"], t["reason"]) for t in shown["recentTicks"]] == [
        ("SKIPPED", "OVERLAP"),
        ("FIRED", None),
    ]

    # The job runs; the following tick fires a new job, which finds nothing left to do.
    await run_worker(settings)
    assert await owner.fetchval("SELECT count(*) FROM products WHERE status = 'ARCHIVED'") == 5
    await tick(settings, first + timedelta(seconds=121))
    [shown] = await schedules(gql)
    assert shown["jobs"]["totalCount"] == 2
    assert shown["recentTicks"][0]["outcome"] == "FIRED"
    assert shown["matchedNow"] == 0


async def test_buffer_one_fires_one_waiting_tick_when_the_job_ends(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 3, with_images=False)
    made = await create(gql, overlap="BUFFER_ONE")
    first = await next_run(owner, made["id"])
    for minute in range(3):
        await tick(settings, first + timedelta(minutes=minute, seconds=1))
    [shown] = await schedules(gql)
    assert [(t["outcome"], t["reason"]) for t in shown["recentTicks"]] == [
        ("SKIPPED", "BUFFER_FULL"),
        ("BUFFERED", None),
        ("FIRED", None),
    ]
    await run_worker(settings)
    # No new tick is due: the buffered one fires, its previous job having ended.
    report = await tick(settings, first + timedelta(minutes=2, seconds=2))
    assert report.fired == 1
    [shown] = await schedules(gql)
    assert [t["outcome"] for t in shown["recentTicks"]] == ["SKIPPED", "FIRED", "FIRED"]
    assert shown["jobs"]["totalCount"] == 2
    assert shown["lastJob"]["status"] == "QUEUED"


@pytest.mark.parametrize(
    ("overlap", "statuses"),
    [("CANCEL_OTHER", ["CANCELLED", "QUEUED"]), ("ALLOW", ["QUEUED", "QUEUED"])],
)
async def test_cancel_other_cancels_the_running_job_and_allow_runs_alongside(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    overlap: str,
    statuses: list[str],
) -> None:
    await make_products(owner, storage, tenant, 3, with_images=False)
    made = await create(gql, overlap=overlap)
    first = await next_run(owner, made["id"])
    for minute in range(2):
        await tick(settings, first + timedelta(minutes=minute, seconds=1))
    rows = await owner.fetch(
        """SELECT j.status FROM schedule_ticks t JOIN jobs j ON j.id = t.job_id
           ORDER BY t.tick_at"""
    )
    assert [r["status"] for r in rows] == statuses


async def test_a_tick_whose_worker_died_while_firing_it_is_fired_by_another(
    gql: GraphQLClient, owner: asyncpg.Connection, settings: Settings
) -> None:
    made = await create(gql)
    first = await next_run(owner, made["id"])
    # A worker claimed the tick two minutes ago and died before queueing its job.
    await owner.execute(
        """INSERT INTO schedule_ticks (tenant_id, schedule_id, tick_at, outcome, updated_at)
           SELECT tenant_id, id, next_run_at, 'PENDING', now() - interval '2 minutes'
           FROM schedules WHERE id = $1""",
        made["id"],
    )
    await owner.execute(
        "UPDATE schedules SET next_run_at = next_run_at + interval '1 minute' WHERE id = $1",
        made["id"],
    )
    report = await tick(settings, first + timedelta(seconds=1))
    assert report.fired == 1
    [shown] = await schedules(gql)
    [fired] = shown["recentTicks"]
    assert (fired["outcome"], fired["job"]["id"]) == ("FIRED", shown["lastJob"]["id"])


async def test_missed_ticks_beyond_the_catch_up_window_are_recorded_as_skipped(
    gql: GraphQLClient, owner: asyncpg.Connection, settings: Settings
) -> None:
    made = await create(gql, catchupWindowSeconds=90)
    first = await next_run(owner, made["id"])
    # The workers were down for ten minutes.
    await tick(settings, first + timedelta(minutes=10, seconds=5))
    [shown] = await schedules(gql)
    ticks = shown["recentTicks"]
    assert [(t["outcome"], t["reason"]) for t in ticks] == [
        ("FIRED", None),
        ("SKIPPED", "COALESCED"),
    ] + [("SKIPPED", "MISSED")] * 9
    assert datetime.fromisoformat(ticks[0]["at"]) == first + timedelta(minutes=10)
    assert shown["jobs"]["totalCount"] == 1


async def test_a_paused_schedule_fires_nothing_and_resumes_without_the_old_ticks(
    gql: GraphQLClient, owner: asyncpg.Connection, settings: Settings
) -> None:
    made = await create(gql)
    first = await next_run(owner, made["id"])
    paused = await act(gql, "pauseSchedule", made["id"])
    assert paused == {"__typename": "Schedule", "id": made["id"], "paused": True}
    await tick(settings, first + timedelta(seconds=1))
    [shown] = await schedules(gql)
    assert (shown["paused"], shown["recentTicks"], shown["lastJob"]) == (True, [], None)

    # Paused an hour ago: of the pause's ticks, none beyond the catch-up window fires.
    await owner.execute(
        "UPDATE schedules SET paused_at = now() - interval '1 hour' WHERE id = $1", made["id"]
    )
    resumed_at = await owner.fetchval("SELECT now()")
    resumed = await act(gql, "resumeSchedule", made["id"])
    assert resumed == {"__typename": "Schedule", "id": made["id"], "paused": False}
    await tick(settings, first + timedelta(seconds=1))
    [shown] = await schedules(gql)
    ticks = shown["recentTicks"]
    assert ticks[0]["outcome"] == "FIRED"
    assert {t["outcome"] for t in ticks[1:]} <= {"SKIPPED"}
    assert datetime.fromisoformat(ticks[0]["at"]) == first
    assert all(
        datetime.fromisoformat(t["at"]) >= resumed_at - timedelta(seconds=300) for t in ticks
    )
    assert shown["jobs"]["totalCount"] == 1


async def test_a_tick_whose_arguments_are_refused_now_is_recorded_with_the_refusal(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    dataset = await make_dataset(owner, tenant, "Weekly picks")
    await make_products(owner, storage, tenant, 2, with_images=False)
    made = await create(
        gql,
        operation="addProductsToDataset",
        arguments={"selection": {"filter": {}}, "datasetId": str(dataset)},
    )
    assert made["matchedNow"] == 2
    first = await next_run(owner, made["id"])
    await owner.execute("DELETE FROM datasets WHERE id = $1", dataset)
    report = await tick(settings, first + timedelta(seconds=1))
    assert (report.fired, report.rejected) == (0, 1)
    [shown] = await schedules(gql)
    [rejected] = shown["recentTicks"]
    assert (rejected["outcome"], rejected["job"]) == ("REJECTED", None)
    assert rejected["reason"].startswith("NOT_FOUND: ")
    assert shown["matchedNow"] is None
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_run_now_queues_a_job_and_obeys_the_overlap_policy(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    await make_products(owner, storage, tenant, 4, with_images=False)
    made = await create(gql, cron="0 0 1 1 *")
    run = await act(gql, "runScheduleNow", made["id"])
    assert run["__typename"] == "JobQueued", run
    assert run["job"]["operation"] == "setProductStatus"
    [shown] = await schedules(gql)
    assert shown["lastJob"]["id"] == run["job"]["id"]
    assert [(t["kind"], t["outcome"]) for t in shown["recentTicks"]] == [("MANUAL", "FIRED")]
    busy = await act(gql, "runScheduleNow", made["id"])
    assert busy == {"__typename": "Rejected", "code": "SCHEDULE_BUSY", "field": ["id"]}

    gone = await act(gql, "deleteSchedule", made["id"])
    assert gone == {"__typename": "Deleted", "id": made["id"]}
    assert await schedules(gql) == []
    # The job it made stays.
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 1


async def test_another_tenant_neither_sees_nor_acts_on_a_schedule(
    gql: GraphQLClient, http: httpx.AsyncClient, other_tenant: Tenant
) -> None:
    made = await create(gql)
    theirs = GraphQLClient(http, other_tenant.token)
    assert await schedules(theirs) == []
    for name in ("pauseSchedule", "resumeSchedule", "runScheduleNow", "deleteSchedule"):
        answer = await act(theirs, name, made["id"])
        assert answer == {"__typename": "Rejected", "code": "NOT_FOUND", "field": ["id"]}, name
    [ours] = await schedules(gql)
    assert (ours["id"], ours["paused"]) == (made["id"], False)
