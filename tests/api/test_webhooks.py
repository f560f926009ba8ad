"""Webhooks as a receiver sees them: signed deliveries of a job's events, retried under one
webhook-id while the receiver is down, filtered by event, stopped by a 410, signed with
both secrets after a rotation; endpoints refused when bad and kept to their tenant."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from standardwebhooks import Webhook
from starlette.responses import JSONResponse

from bulkops.config import Settings
from bulkops.storage import Storage
from bulkops.tasks.worker import build_worker
from tests.api.queries import SET_STATUS
from tests.api.test_schedules import create as create_schedule
from tests.api.test_schedules import next_run
from tests.api.test_schedules import tick as schedule_tick
from tests.outside_server import ProviderServer, Seen, provider_server
from tests.support import GraphQLClient, Tenant, make_products

BACKGROUND = {"mode": "BACKGROUND"}

CREATE = """
mutation($url: String!, $events: [String!], $description: String) {
  createWebhookEndpoint(url: $url, events: $events, description: $description) {
    __typename
    ... on CreatedWebhookEndpoint { secret endpoint { id url events enabled } }
    ... on Rejected { code message field }
  }
}"""

ENDPOINTS = """
{ webhookEndpoints { id url events enabled disabledReason
    deliveries(first: 50) { totalCount edges { node {
      id eventId event jobId attempts status lastResponseStatus lastError nextAttemptAt
      deliveredAt } } } } }"""

ROTATE = """
mutation($id: ID!) { rotateWebhookSecret(id: $id) {
  __typename ... on CreatedWebhookEndpoint { secret } ... on Rejected { code field } } }"""

UPDATE = """
mutation($id: ID!, $enabled: Boolean) { updateWebhookEndpoint(id: $id, enabled: $enabled) {
  __typename ... on WebhookEndpoint { enabled } ... on Rejected { code field } } }"""

DELETE = """
mutation($id: ID!) { deleteWebhookEndpoint(id: $id) {
  __typename ... on Deleted { id } ... on Rejected { code field } } }"""

REDELIVER = """
mutation($id: ID!) { redeliverWebhook(deliveryId: $id) {
  __typename ... on WebhookDelivery { status eventId } ... on Rejected { code field } } }"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The receivers listen on loopback; retries come within a second instead of minutes.
    return settings.model_copy(
        update={
            "allow_private_networks": True,
            "webhook_retry_schedule": [0.2, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
            "webhook_poll_seconds": 0.05,
            "webhook_timeout_seconds": 2.0,
        }
    )


@contextlib.asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[None]:
    """A worker running jobs and sending deliveries until the block ends."""
    running = build_worker(settings, handle_signals=False, poll_delay=0.01)
    task = asyncio.create_task(running.main())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Jobs in flight (a schedule's tick, say) end on their own first: close() cancels
        # them otherwise, and a cancelled one makes it stop before the worker's shutdown.
        if running.tasks:
            await asyncio.wait(list(running.tasks.values()), timeout=30)
        await running.close()


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """The first truthy answer of `check`, asked again until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await check()
        if answer:
            return answer
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def create(gql: GraphQLClient, url: str, events: list[str] | None = None) -> dict[str, Any]:
    result = (await gql(CREATE, {"url": url, "events": events}))["createWebhookEndpoint"]
    assert result["__typename"] == "CreatedWebhookEndpoint", result
    assert result["secret"].startswith("whsec_")
    return dict(result)


async def endpoints(gql: GraphQLClient) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in (await gql(ENDPOINTS))["webhookEndpoints"]}


def deliveries(endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in endpoint["deliveries"]["edges"]]


async def queue_job(gql: GraphQLClient) -> str:
    result = (
        await gql(
            SET_STATUS, {"selection": {"filter": {}}, "status": "ACTIVE", "options": BACKGROUND}
        )
    )["setProductStatus"]
    assert result["__typename"] == "JobQueued", result
    return str(result["job"]["id"])


def verified(secret: str, seen: list[Seen]) -> list[tuple[Seen, dict[str, Any]]]:
    """Every request with its body, each verified with `secret` as a receiver would."""
    return [(s, Webhook(secret).verify(s.body, s.headers)) for s in seen if s.method == "POST"]


async def test_a_jobs_events_reach_a_receiver_that_was_down_once_each_under_one_id(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    receiver = ProviderServer()  # not listening yet: connections are refused
    every = await create(gql, receiver.url("/all"))
    finished = await create(gql, receiver.url("/finished"), ["job.succeeded", "job.failed"])
    async with worker(settings):
        job_id = await queue_job(gql)

        async def refused_twice() -> bool:
            listed = await endpoints(gql)
            return any(
                d["attempts"] >= 2 and d["lastError"] and d["status"] == "PENDING"
                for d in deliveries(listed[every["endpoint"]["id"]])
            )

        await until(refused_twice)
        await receiver.start()
        try:

            async def all_delivered() -> dict[str, dict[str, Any]] | None:
                listed = await endpoints(gql)
                done = [d["status"] == "DELIVERED" for e in listed.values() for d in deliveries(e)]
                return listed if len(done) == 4 and all(done) else None

            listed = await until(all_delivered)
        finally:
            await receiver.stop()

    log = deliveries(listed[every["endpoint"]["id"]])
    assert [d["event"] for d in log] == ["job.succeeded", "job.started", "job.queued"]
    assert {d["jobId"] for d in log} == {job_id}
    assert all(d["lastResponseStatus"] == 200 and d["deliveredAt"] for d in log)
    assert any(d["attempts"] > 1 for d in log)
    assert [d["event"] for d in deliveries(listed[finished["endpoint"]["id"]])] == ["job.succeeded"]

    received = verified(every["secret"], [s for s in receiver.seen if s.path == "/all"])
    by_id: dict[str, list[dict[str, Any]]] = {}
    for seen, body in received:
        by_id.setdefault(seen.headers["webhook-id"], []).append(body)
    assert set(by_id) == {d["eventId"] for d in log}
    for bodies in by_id.values():
        assert all(b == bodies[0] for b in bodies)
    events = {bodies[0]["type"]: bodies[0]["data"]["job"] for bodies in by_id.values()}
    assert set(events) == {"job.queued", "job.started", "job.succeeded"}
    versions = [events[e]["version"] for e in ("job.queued", "job.started", "job.succeeded")]
    assert versions == sorted(set(versions)), versions
    assert events["job.succeeded"]["succeeded"] == 5
    assert events["job.succeeded"]["status"] == "SUCCEEDED"
    assert events["job.succeeded"]["id"] == job_id
    only = verified(finished["secret"], [s for s in receiver.seen if s.path == "/finished"])
    assert [body["type"] for _, body in only] == ["job.succeeded"]


async def test_an_endpoint_answering_410_is_disabled_and_gets_nothing_more(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 3, with_images=False)
    async with provider_server() as receiver, worker(settings):
        receiver.answer(JSONResponse({"error": "gone"}, status_code=410))
        created = await create(gql, receiver.url("/gone"), ["job.queued"])
        await queue_job(gql)

        async def disabled() -> dict[str, Any] | None:
            endpoint = (await endpoints(gql))[created["endpoint"]["id"]]
            return None if endpoint["enabled"] else endpoint

        endpoint = await until(disabled)
        await queue_job(gql)
        await asyncio.sleep(0.5)
    assert "410" in endpoint["disabledReason"]
    [delivery] = deliveries((await endpoints(gql))[created["endpoint"]["id"]])
    assert delivery["status"] == "FAILED"
    assert delivery["lastResponseStatus"] == 410
    assert len(receiver.seen) == 1
    # Redelivering to a disabled endpoint is refused; enabled again, it is sent.
    refused = (await gql(REDELIVER, {"id": delivery["id"]}))["redeliverWebhook"]
    assert refused == {
        "__typename": "Rejected",
        "code": "ENDPOINT_DISABLED",
        "field": ["deliveryId"],
    }
    enabled = await gql(UPDATE, {"id": created["endpoint"]["id"], "enabled": True})
    assert enabled["updateWebhookEndpoint"]["enabled"] is True


async def test_after_a_rotation_both_secrets_verify_a_delivery_and_redelivery_keeps_its_id(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 2, with_images=False)
    async with provider_server() as receiver, worker(settings):
        created = await create(gql, receiver.url("/hook"), ["job.queued"])
        rotated = (await gql(ROTATE, {"id": created["endpoint"]["id"]}))["rotateWebhookSecret"]
        assert rotated["secret"] != created["secret"]
        await queue_job(gql)
        await until(lambda: asyncio.sleep(0, result=len(receiver.seen) >= 1))
        [delivery] = deliveries((await endpoints(gql))[created["endpoint"]["id"]])
        again = (await gql(REDELIVER, {"id": delivery["id"]}))["redeliverWebhook"]
        assert again == {
            "__typename": "WebhookDelivery",
            "status": "PENDING",
            "eventId": delivery["eventId"],
        }
        await until(lambda: asyncio.sleep(0, result=len(receiver.seen) >= 2))
    for secret in (created["secret"], rotated["secret"]):
        bodies = [body for _, body in verified(secret, receiver.seen)]
        assert [b["type"] for b in bodies] == ["job.queued", "job.queued"]
    assert {s.headers["webhook-id"] for s in receiver.seen} == {delivery["eventId"]}
    assert len(receiver.seen[0].headers["webhook-signature"].split(" ")) == 2


async def test_bad_endpoints_are_rejected_naming_the_field_and_nothing_is_stored(
    gql: GraphQLClient,
) -> None:
    cases = [
        ({"url": "ftp://example.com/hook"}, "INVALID_URL", ["url"]),
        ({"url": "not a url"}, "INVALID_URL", ["url"]),
        ({"url": "https://" + "a" * 2100 + ".com/"}, "INVALID_URL", ["url"]),
        (
            {"url": "https://example.com/", "events": ["job.succeeded", "job.exploded"]},
            "UNKNOWN_EVENT",
            ["events", "1"],
        ),
        (
            {"url": "https://does-not-exist.invalid/hook"},
            "HOST_NOT_FOUND",
            ["url"],
        ),
    ]
    for variables, code, field in cases:
        result = (await gql(CREATE, variables))["createWebhookEndpoint"]
        assert result["__typename"] == "Rejected", (variables, result)
        assert (result["code"], result["field"]) == (code, field), variables
    assert (await gql(ENDPOINTS))["webhookEndpoints"] == []
    for query, name, variables in [
        (ROTATE, "rotateWebhookSecret", {"id": "nope"}),
        (DELETE, "deleteWebhookEndpoint", {"id": "00000000-0000-0000-0000-000000000000"}),
        (REDELIVER, "redeliverWebhook", {"id": "nope"}),
    ]:
        result = (await gql(query, variables))[name]
        assert result["__typename"] == "Rejected" and result["code"] == "NOT_FOUND", result


async def test_another_tenant_neither_sees_nor_touches_the_endpoints_and_deliveries(
    gql: GraphQLClient,
    http: Any,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 2, with_images=False)
    async with provider_server() as receiver:
        created = await create(gql, receiver.url("/hook"))
        await queue_job(gql)
    [delivery] = deliveries((await endpoints(gql))[created["endpoint"]["id"]])
    other = GraphQLClient(http, other_tenant.token)
    # The other tenant's own jobs make no delivery to this tenant's endpoint.
    await make_products(owner, storage, other_tenant, 2, with_images=False)
    await queue_job(other)
    assert (await other(ENDPOINTS))["webhookEndpoints"] == []
    endpoint_id = created["endpoint"]["id"]
    for query, name, variables in [
        (ROTATE, "rotateWebhookSecret", {"id": endpoint_id}),
        (UPDATE, "updateWebhookEndpoint", {"id": endpoint_id, "enabled": False}),
        (DELETE, "deleteWebhookEndpoint", {"id": endpoint_id}),
        (REDELIVER, "redeliverWebhook", {"id": delivery["id"]}),
    ]:
        result = (await other(query, variables))[name]
        assert result["__typename"] == "Rejected" and result["code"] == "NOT_FOUND", result
    [mine] = (await gql(ENDPOINTS))["webhookEndpoints"]
    assert mine["enabled"] is True
    assert [d["id"] for d in deliveries(mine)] == [delivery["id"]]
    deleted = (await gql(DELETE, {"id": endpoint_id}))["deleteWebhookEndpoint"]
    assert deleted == {"__typename": "Deleted", "id": endpoint_id}
    assert (await gql(ENDPOINTS))["webhookEndpoints"] == []


async def test_a_token_without_the_admin_scope_may_not_manage_endpoints(
    http: Any, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    from bulkops.db.tenants import insert_token
    from bulkops.services.auth import hash_token, new_token

    token = new_token()
    await insert_token(owner, tenant.id, hash_token(token), scope="write")
    response = await GraphQLClient(http, token).post(ENDPOINTS)
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_an_endpoint_failing_for_longer_than_the_setting_is_disabled_with_a_reason(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 2, with_images=False)
    failing_for = settings.model_copy(update={"webhook_disable_after_hours": 1 / 3600})
    async with provider_server() as receiver, worker(failing_for):
        receiver.answer(JSONResponse({"error": "boom"}, status_code=500))
        created = await create(gql, receiver.url("/broken"), ["job.queued"])
        await queue_job(gql)

        async def disabled() -> dict[str, Any] | None:
            endpoint = (await endpoints(gql))[created["endpoint"]["id"]]
            return None if endpoint["enabled"] else endpoint

        endpoint = await until(disabled)
    assert endpoint["disabledReason"].startswith("Every delivery has failed since")
    [delivery] = deliveries(endpoint)
    assert delivery["lastResponseStatus"] == 500
    assert delivery["lastError"] == "500 Internal Server Error: boom"
    assert delivery["attempts"] >= 2


EXPORT = """
mutation($options: BulkOptions) { exportProducts(format: CSV, options: $options) {
  __typename ... on JobQueued { job { id } } } }"""


async def test_an_exports_succeeded_event_links_its_file_and_the_link_downloads_it(
    gql: GraphQLClient,
    http: Any,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    server: str,
) -> None:
    await make_products(owner, storage, tenant, 7, with_images=False)
    async with provider_server() as receiver, worker(settings):
        created = await create(gql, receiver.url("/export"), ["job.succeeded"])
        queued = (await gql(EXPORT, {"options": BACKGROUND}))["exportProducts"]
        assert queued["__typename"] == "JobQueued"
        await until(lambda: asyncio.sleep(0, result=len(receiver.seen) >= 1))
    [(_, body)] = verified(created["secret"], receiver.seen)
    job = body["data"]["job"]
    assert (job["id"], job["status"], job["errorsUrl"]) == (queued["job"]["id"], "SUCCEEDED", None)
    assert (job["resultFile"]["rows"], job["resultFile"]["format"]) == (7, "CSV")
    # The link names the configured public address; this API serves the same path.
    path = job["resultFile"]["url"].removeprefix(settings.public_url)
    download = await http.get(path)
    assert download.status_code == 200
    assert len(download.text.strip().splitlines()) == 8


async def test_other_events_join_the_outbox_in_their_own_transaction_and_tenant(
    gql: GraphQLClient, tenant: Tenant, other_tenant: Tenant, settings: Settings
) -> None:
    from bulkops.db.pool import create_pool, tenant_transaction
    from bulkops.db.webhooks import enqueue_event

    created = await create(gql, "https://93.184.215.14/hook", ["schedule.skipped"])
    pool = await create_pool(settings.database_url or "", role=settings.app_role, min_size=1)
    try:
        with contextlib.suppress(RuntimeError):
            async with tenant_transaction(pool, tenant.id) as conn:
                await enqueue_event(conn, "schedule.skipped", {"schedule": {"id": "s1"}})
                raise RuntimeError("rolled back")
        async with tenant_transaction(pool, tenant.id) as conn:
            assert await enqueue_event(conn, "job.failed", {}) == 0
            assert await enqueue_event(conn, "schedule.skipped", {"schedule": {"id": "s2"}}) == 1
        with pytest.raises(asyncpg.RaiseError):
            async with tenant_transaction(pool, other_tenant.id) as conn:
                await conn.execute(
                    "SELECT enqueue_webhook($1, 'schedule.skipped', NULL, '{}')", tenant.id
                )
    finally:
        await pool.close()
    [delivery] = deliveries((await endpoints(gql))[created["endpoint"]["id"]])
    assert (delivery["event"], delivery["jobId"], delivery["status"]) == (
        "schedule.skipped",
        None,
        "PENDING",
    )


async def test_pausing_resuming_and_cancelling_a_job_are_events_with_rising_versions(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    await make_products(owner, storage, tenant, 3, with_images=False)
    created = await create(gql, "https://93.184.215.14/hook")
    job_id = await queue_job(gql)
    for action in ("pauseJob", "resumeJob", "cancelJob"):
        answer = await gql(
            f"mutation($id: ID!) {{ {action}(id: $id) {{ __typename }} }}", {"id": job_id}
        )
        assert answer[action]["__typename"] == "Job", answer
    # No worker runs: the events wait in the outbox, newest first in the log.
    log = deliveries((await endpoints(gql))[created["endpoint"]["id"]])
    assert [d["event"] for d in log] == ["job.cancelled", "job.paused", "job.queued"]
    assert {d["status"] for d in log} == {"PENDING"}
    rows = await owner.fetch(
        "SELECT payload FROM webhook_deliveries WHERE job_id = $1 ORDER BY seq", job_id
    )
    jobs = [json.loads(r["payload"])["data"]["job"] for r in rows]
    versions = [job["version"] for job in jobs]
    assert versions == sorted(set(versions)), versions
    assert [job["status"] for job in jobs] == ["QUEUED", "PAUSED", "CANCELLED"]


async def test_a_receiver_that_hangs_does_not_hold_up_another_endpoints_deliveries(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 2, with_images=False)
    release = asyncio.Event()

    async def hang(request: Any) -> JSONResponse:
        await release.wait()
        return JSONResponse({"ok": True})

    hanging_for = settings.model_copy(update={"webhook_timeout_seconds": 30.0})
    async with provider_server() as slow, provider_server() as fast, worker(hanging_for):
        slow.answer(hang)
        await create(gql, slow.url("/slow"), ["job.queued"])
        await queue_job(gql)
        await until(lambda: asyncio.sleep(0, result=slow.in_flight == 1))
        # The first delivery hangs; an endpoint created after it still gets the next event.
        quick = await create(gql, fast.url("/fast"), ["job.queued"])
        await queue_job(gql)
        await until(lambda: asyncio.sleep(0, result=len(fast.seen) == 1))
        # Meanwhile both of the slow endpoint's deliveries hang.
        await until(lambda: asyncio.sleep(0, result=slow.in_flight == 2))
        assert not release.is_set() and len(slow.seen) == 2
        release.set()
        await until(lambda: asyncio.sleep(0, result=slow.in_flight == 0))
    [(_, body)] = verified(quick["secret"], fast.seen)
    assert body["type"] == "job.queued"


async def test_ticks_a_schedule_skips_are_events_for_the_endpoints_that_want_them(
    gql: GraphQLClient, owner: asyncpg.Connection, settings: Settings
) -> None:
    wants = await create(gql, "http://127.0.0.1:9/skipped", ["schedule.skipped"])
    others = await create(gql, "http://127.0.0.1:9/jobs", ["job.succeeded"])
    made = await create_schedule(gql, catchupWindowSeconds=90)
    first = await next_run(owner, made["id"])
    # The workers were down for ten minutes: one tick fires, ten are skipped.
    await schedule_tick(settings, first + timedelta(minutes=10, seconds=5))
    listed = await endpoints(gql)
    skipped = deliveries(listed[wants["endpoint"]["id"]])
    assert [d["event"] for d in skipped] == ["schedule.skipped"] * 10
    assert all(d["jobId"] is None for d in skipped)
    assert deliveries(listed[others["endpoint"]["id"]]) == []
    payloads = await owner.fetch(
        "SELECT payload FROM webhook_deliveries WHERE endpoint_id = $1",
        wants["endpoint"]["id"],
    )
    data = [
        (p["payload"] if isinstance(p["payload"], dict) else json.loads(p["payload"]))["data"]
        for p in payloads
    ]
    assert {d["schedule"]["id"] for d in data} == {made["id"]}
    assert sorted(d["tick"]["reason"] for d in data) == ["COALESCED"] + ["MISSED"] * 9


async def test_a_committed_event_wakes_the_sender_without_waiting_for_its_poll(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 2, with_images=False)
    # The sender polls once when it starts, then not again within the test: only the
    # outbox's notice can bring it the job's events.
    never = settings.model_copy(update={"webhook_poll_seconds": 3600.0})
    async with provider_server() as receiver:
        endpoint = await create(gql, receiver.url("/hook"))
        async with worker(never):
            await asyncio.sleep(0.2)  # the sender's first poll has passed
            job_id = await queue_job(gql)

            async def delivered() -> list[str] | None:
                got = [body["type"] for _, body in verified(endpoint["secret"], receiver.seen)]
                return got if "job.succeeded" in got else None

            events = await until(delivered)
    assert sorted(events) == ["job.queued", "job.started", "job.succeeded"]
    assert {
        body["data"]["job"]["id"] for _, body in verified(endpoint["secret"], receiver.seen)
    } == {job_id}
