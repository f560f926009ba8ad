"""Jobs as a user follows them: progress subscriptions, cancel, per-item failures."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import asyncpg

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import CANCEL, DELETE, JOB, JOB_SUBSCRIPTION, SET_STATUS
from tests.support import (
    GraphQLClient,
    Runner,
    Subscription,
    Tenant,
    make_products,
    run_worker,
)

BACKGROUND = {"mode": "BACKGROUND"}


async def queue_delete(gql: GraphQLClient, selection: dict[str, Any]) -> str:
    result = (await gql(DELETE, {"selection": selection, "options": BACKGROUND}))["deleteProducts"]
    assert result["__typename"] == "JobQueued", result
    return str(result["job"]["id"])


async def test_subscriber_sees_every_state_in_rising_versions_until_the_terminal_one(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    ws_url: str,
) -> None:
    await make_products(owner, storage, tenant, 40, with_images=False)
    job_id = await queue_delete(gql, {"filter": {}})
    sub = Subscription(ws_url, tenant.token)
    await sub.connect()
    await sub.start(JOB_SUBSCRIPTION, {"id": job_id})
    first = await sub.next()
    assert first["payload"]["data"]["job"]["status"] == "QUEUED"
    worker = asyncio.create_task(run_worker(settings.model_copy(update={"batch_size": 10})))
    rest = await sub.messages()
    await worker
    await sub.close()
    states = [first["payload"]["data"]["job"]] + [
        m["payload"]["data"]["job"] for m in rest if m["type"] == "next"
    ]
    assert rest[-1]["type"] == "complete"
    versions = [s["version"] for s in states]
    assert versions == sorted(set(versions)), versions
    assert states[-1]["status"] == "SUCCEEDED"
    assert states[-1]["processed"] == 40
    assert "RUNNING" in {s["status"] for s in states}
    processed = [s["processed"] for s in states]
    assert processed == sorted(processed)


async def test_late_subscriber_still_receives_the_terminal_state(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    ws_url: str,
) -> None:
    await make_products(owner, storage, tenant, 12, with_images=False)
    job_id = await queue_delete(gql, {"filter": {}})
    await run_worker(settings)
    sub = Subscription(ws_url, tenant.token)
    await sub.connect(init_key="Authorization")
    await sub.start(JOB_SUBSCRIPTION, {"id": job_id})
    messages = await sub.messages()
    await sub.close()
    assert [m["type"] for m in messages] == ["next", "complete"]
    job = messages[0]["payload"]["data"]["job"]
    assert (job["status"], job["processed"], job["progress"]) == ("SUCCEEDED", 12, 1.0)


async def test_jobs_subscription_streams_only_the_callers_jobs(
    gql: GraphQLClient,
    http: Any,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
    ws_url: str,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    await make_products(owner, storage, other_tenant, 5, with_images=False)
    mine = await queue_delete(gql, {"filter": {}})
    sub = Subscription(ws_url, tenant.token)
    await sub.connect()
    await sub.start("subscription { jobs { id status operation } }", {})
    # The stream opens with the tenant's unfinished jobs, so it is live from here on.
    first = (await sub.next(timeout=10))["payload"]["data"]["jobs"]
    assert (first["id"], first["status"]) == (mine, "QUEUED")
    theirs = await queue_delete(GraphQLClient(http, other_tenant.token), {"filter": {}})
    await run_worker(settings)
    seen = [first]
    while seen[-1]["status"] != "SUCCEEDED":
        seen.append((await sub.next(timeout=10))["payload"]["data"]["jobs"])
    await sub.close()
    assert theirs != mine
    assert {s["id"] for s in seen} == {mine}
    assert [s["status"] for s in seen][-2:] == ["RUNNING", "SUCCEEDED"]


async def test_cancelling_a_queued_job_means_it_never_runs(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 20, with_images=False)
    job_id = await queue_delete(gql, {"filter": {}})
    cancelled = (await gql(CANCEL, {"id": job_id}))["cancelJob"]
    assert cancelled == {"__typename": "Job", "id": job_id, "status": "CANCELLED"}
    await run_worker(settings)
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"]) == ("CANCELLED", 0)
    assert await owner.fetchval("SELECT count(*) FROM products") == 20


async def test_cancelling_a_running_job_stops_it_between_batches_keeping_what_was_done(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 50, with_images=False)
    job_id = await queue_delete(gql, {"filter": {}})
    # One batch of 10 per slice: after the first slice the job is running, 10 items done.
    tiny = settings.model_copy(update={"batch_size": 10, "slice_seconds": 0.0})
    async with Runner(tiny) as runner:
        assert await runner.slice(job_id, tenant) == "SLICED"
    running = (await gql(JOB, {"id": job_id}))["job"]
    assert (running["status"], running["processed"]) == ("RUNNING", 10)

    cancelling = (await gql(CANCEL, {"id": job_id}))["cancelJob"]
    assert cancelling["status"] == "CANCELLING"
    await run_worker(tiny)

    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"]) == ("CANCELLED", 10, 10)
    assert job["result"]["succeeded"] == 10
    assert await owner.fetchval("SELECT count(*) FROM products") == 40
    again = (await gql(CANCEL, {"id": job_id}))["cancelJob"]
    assert again["__typename"] == "Rejected"
    assert (again["code"], again["field"]) == ("JOB_FINISHED", ["id"])


async def test_a_job_longer_than_a_slice_continues_from_its_cursor(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 45, with_images=False)
    result = (
        await gql(
            SET_STATUS,
            {
                "selection": {"ids": [str(i) for i in ids]},
                "status": "ACTIVE",
                "options": BACKGROUND,
            },
        )
    )["setProductStatus"]
    job_id = result["job"]["id"]
    await run_worker(settings.model_copy(update={"batch_size": 10, "slice_seconds": 0.0}))
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"]) == ("SUCCEEDED", 45, 45)
    slices = await owner.fetchval("SELECT slices FROM jobs WHERE id = $1", job_id)
    assert slices == 5
    assert await owner.fetchval("SELECT count(*) FROM products WHERE status = 'ACTIVE'") == 45


async def test_items_that_fail_are_recorded_and_the_job_ends_partial(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 30, with_images=False)
    result = (
        await gql(
            SET_STATUS,
            {
                "selection": {"ids": [str(i) for i in ids]},
                "status": "ARCHIVED",
                "options": BACKGROUND,
            },
        )
    )["setProductStatus"]
    job_id = result["job"]["id"]
    # Five products disappear after the job was accepted and before it runs.
    gone = ids[3:8]
    await owner.execute("DELETE FROM products WHERE id = ANY($1::bigint[])", gone)
    await run_worker(settings.model_copy(update={"batch_size": 7}))

    job = (await gql(JOB, {"id": job_id}))["job"]
    assert job["status"] == "PARTIAL"
    assert (job["processed"], job["succeeded"], job["failed"]) == (30, 25, 5)
    errors = job["errors"]
    assert errors["totalCount"] == 5
    assert sorted(int(e["node"]["itemId"]) for e in errors["edges"]) == gone
    assert {e["node"]["code"] for e in errors["edges"]} == {"NOT_FOUND"}
    assert {int(e["itemId"]) for e in job["recentErrors"]} <= set(gone)
    archived = await owner.fetchval("SELECT count(*) FROM products WHERE status = 'ARCHIVED'")
    assert archived == 25


async def test_abort_policy_stops_at_the_first_failing_batch_leaving_it_unapplied(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 30, with_images=False)
    result = (
        await gql(
            SET_STATUS,
            {
                "selection": {"ids": [str(i) for i in ids]},
                "status": "ARCHIVED",
                "options": {"mode": "BACKGROUND", "errorPolicy": "ABORT"},
            },
        )
    )["setProductStatus"]
    await owner.execute("DELETE FROM products WHERE id = $1", ids[15])
    await run_worker(settings.model_copy(update={"batch_size": 10}))
    job = (await gql(JOB, {"id": result["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("FAILED", 10, 1)
    # The first batch landed; the failing second batch left nothing behind.
    archived = await owner.fetch("SELECT id FROM products WHERE status = 'ARCHIVED' ORDER BY id")
    assert [r["id"] for r in archived] == ids[:10]


PAUSE = """mutation($id: ID!) { pauseJob(id: $id) { __typename ... on Job { status } } }"""
RESUME = """mutation($id: ID!) { resumeJob(id: $id) { __typename ... on Job { status } } }"""


def _states(messages: list[dict[str, Any]], sub_id: str) -> list[dict[str, Any]]:
    assert all(m["id"] == sub_id for m in messages), messages
    assert messages[-1]["type"] == "complete", messages[-1]
    return [m["payload"]["data"]["job"] for m in messages if m["type"] == "next"]


async def test_many_subscribers_of_one_job_each_see_every_status_in_rising_versions(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    ws_url: str,
) -> None:
    await make_products(owner, storage, tenant, 40, with_images=False)
    job_id = await queue_delete(gql, {"filter": {}})
    subs = [Subscription(ws_url, tenant.token) for _ in range(20)]
    await asyncio.gather(*(sub.connect() for sub in subs))
    # Subscription ids are the client's: two on one connection, and every other one "1".
    for sub in subs:
        await sub.start(JOB_SUBSCRIPTION, {"id": job_id})
    await subs[0].start(JOB_SUBSCRIPTION, {"id": job_id}, sub_id="2")
    firsts = [await sub.next() for sub in subs] + [await subs[0].next()]
    assert {m["payload"]["data"]["job"]["status"] for m in firsts} == {"QUEUED"}
    await run_worker(settings.model_copy(update={"batch_size": 10}))
    received = [firsts[1:-1]] + [[] for _ in subs[1:]]
    received[0] = [firsts[0], firsts[-1], *await subs[0].messages(), *await subs[0].messages()]
    for i, sub in enumerate(subs[1:], 1):
        received[i] = [firsts[i], *await sub.messages()]
        await sub.close()
    await subs[0].close()
    streams = [[m for m in received[0] if m["id"] == sub_id] for sub_id in ("1", "2")]
    streams += received[1:]
    for messages in streams:
        states = _states(messages, messages[0]["id"])
        versions = [s["version"] for s in states]
        assert versions == sorted(set(versions)), versions
        assert states[0]["status"] == "QUEUED"
        assert "RUNNING" in {s["status"] for s in states}
        assert (states[-1]["status"], states[-1]["processed"]) == ("SUCCEEDED", 40)


async def test_a_subscriber_joining_others_first_gets_the_jobs_current_state(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    ws_url: str,
) -> None:
    await make_products(owner, storage, tenant, 12, with_images=False)
    job_id = await queue_delete(gql, {"filter": {}})
    early = Subscription(ws_url, tenant.token)
    await early.connect()
    await early.start(JOB_SUBSCRIPTION, {"id": job_id})
    assert (await early.next())["payload"]["data"]["job"]["status"] == "QUEUED"
    assert (await gql(PAUSE, {"id": job_id}))["pauseJob"]["status"] == "PAUSED"
    assert (await early.next())["payload"]["data"]["job"]["status"] == "PAUSED"
    late = Subscription(ws_url, tenant.token)
    await late.connect()
    await late.start(JOB_SUBSCRIPTION, {"id": job_id})
    first = (await late.next())["payload"]["data"]["job"]
    assert first["status"] == "PAUSED"
    assert (await gql(RESUME, {"id": job_id}))["resumeJob"]["status"] == "QUEUED"
    await run_worker(settings)
    seen = [first, *_states(await late.messages(), "1")]
    early_seen = _states(await early.messages(), "1")
    await early.close()
    await late.close()
    assert [s["status"] for s in seen][:2] == ["PAUSED", "QUEUED"]
    assert seen[-1]["status"] == early_seen[-1]["status"] == "SUCCEEDED"
    assert [s["version"] for s in seen] == sorted({s["version"] for s in seen})


async def test_the_same_subscription_from_another_tenant_gets_nothing_of_the_job(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
    ws_url: str,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    job_id = await queue_delete(gql, {"filter": {}})
    mine = Subscription(ws_url, tenant.token)
    await mine.connect()
    await mine.start(JOB_SUBSCRIPTION, {"id": job_id})
    assert (await mine.next())["payload"]["data"]["job"]["status"] == "QUEUED"
    theirs = Subscription(ws_url, other_tenant.token)
    await theirs.connect()
    await theirs.start(JOB_SUBSCRIPTION, {"id": job_id})
    messages = await theirs.messages()
    await theirs.close()
    await run_worker(settings)
    assert _states(await mine.messages(), "1")[-1]["status"] == "SUCCEEDED"
    await mine.close()
    payload = messages[0]["payload"]
    errors = payload if messages[0]["type"] == "error" else payload["errors"]
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    # No state of the job: one error, then the end.
    assert [m["type"] for m in messages] in (["error"], ["next", "complete"]), messages
    assert messages[0]["type"] == "error" or messages[0]["payload"]["data"] is None


async def test_a_second_jobs_subscriber_also_starts_with_the_unfinished_jobs(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    ws_url: str,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    first_job = await queue_delete(gql, {"ids": ["1"]})
    query = "subscription { jobs { id status } }"
    early = Subscription(ws_url, tenant.token)
    await early.connect()
    await early.start(query, {})
    assert (await early.next())["payload"]["data"]["jobs"]["id"] == first_job
    second_job = await queue_delete(gql, {"filter": {}})
    assert (await early.next())["payload"]["data"]["jobs"]["id"] == second_job
    late = Subscription(ws_url, tenant.token)
    await late.connect()
    await late.start(query, {})
    opening = [(await late.next())["payload"]["data"]["jobs"] for _ in range(2)]
    await early.close()
    await late.close()
    assert {(j["id"], j["status"]) for j in opening} == {
        (first_job, "QUEUED"),
        (second_job, "QUEUED"),
    }


JOBS_PAGE = """
query($after: String) {
  jobs(first: 2, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { node { id } }
  }
}"""


async def test_the_jobs_list_pages_newest_first_from_a_cursor(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    await make_products(owner, storage, tenant, 3, with_images=False)
    queued = [await queue_delete(gql, {"ids": [str(i)]}) for i in (1, 2, 3)]
    first = (await gql(JOBS_PAGE, {"after": None}))["jobs"]
    second = (await gql(JOBS_PAGE, {"after": first["pageInfo"]["endCursor"]}))["jobs"]
    assert first["totalCount"] == second["totalCount"] == 3
    assert first["pageInfo"]["hasNextPage"] is True
    assert second["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "endCursor": second["pageInfo"]["endCursor"],
    }
    listed = [e["node"]["id"] for e in first["edges"] + second["edges"]]
    assert listed == queued[::-1]


async def test_a_jobs_cursor_that_is_not_one_is_bad_input(gql: GraphQLClient) -> None:
    forged = base64.urlsafe_b64encode(b"job:yesterday|not-a-job").decode()
    for after in ("garbage", forged):
        response = await gql.post(JOBS_PAGE, {"after": after})
        error = response.json()["errors"][0]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": ["after"]}
