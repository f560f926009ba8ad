"""`queueStatus` as an operator sees it: the waiting slices by priority and the longest wait,
the running ones, the live workers from their heartbeats, and only for operator tokens (a
tenant's admin does not see the shared queue or the workers' hosts)."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from bulkops.services.queue import enqueue_slice
from bulkops.services.queue_status import read_queue_status
from bulkops.storage import Storage
from bulkops.tasks.heartbeat import Heartbeat
from tests.api.queries import DELETE
from tests.api.test_scopes import assert_forbidden, token_with
from tests.support import GraphQLClient, Runner, Tenant, make_products, make_tenant, run_worker

QUEUE_STATUS = """
{ queueStatus {
    waiting { priority count } deferred runningSlices oldestWaitingSeconds
    workers { id host startedAt lastSeenAt runningSlices }
} }"""


@pytest.fixture
async def operator(http: httpx.AsyncClient, owner: asyncpg.Connection) -> GraphQLClient:
    """The service's operator, with a token of its own tenant."""
    ops = await make_tenant(owner, "ops")
    return GraphQLClient(http, await token_with(owner, ops, "operator", "on call"))


async def queue_job(gql: GraphQLClient, ids: list[int], priority: str) -> str:
    data = await gql(
        DELETE,
        {"selection": {"ids": ids}, "options": {"mode": "BACKGROUND", "priority": priority}},
    )
    return str(data["deleteProducts"]["job"]["id"])


async def status(gql: GraphQLClient) -> dict[str, Any]:
    data = await gql(QUEUE_STATUS)
    return data["queueStatus"]  # type: ignore[no-any-return]


async def until(gql: GraphQLClient, check: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The first queue status `check` accepts, asked every 50 ms."""
    deadline = time.monotonic() + timeout
    while True:
        current = await status(gql)
        if check(current):
            return current
        assert time.monotonic() < deadline, current
        await asyncio.sleep(0.05)


async def test_waiting_jobs_by_priority_and_the_longest_wait(
    gql: GraphQLClient,
    operator: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    ids = await make_products(owner, storage, tenant, 4, with_images=False)
    for product_id, priority in zip(ids, ["HIGH", "NORMAL", "NORMAL", "LOW"], strict=True):
        await queue_job(gql, [product_id], priority)

    current = await status(operator)
    assert current["waiting"] == [
        {"priority": "HIGH", "count": 1},
        {"priority": "NORMAL", "count": 2},
        {"priority": "LOW", "count": 1},
    ]
    assert current["deferred"] == 0
    assert current["runningSlices"] == 0
    assert 0 <= current["oldestWaitingSeconds"] < 30
    assert current["workers"] == []


async def test_an_empty_queue_has_no_oldest_wait(operator: GraphQLClient) -> None:
    current = await status(operator)
    assert current["oldestWaitingSeconds"] is None
    assert sum(entry["count"] for entry in current["waiting"]) == 0


async def test_the_longest_wait_counts_from_when_a_slice_could_start(settings: Settings) -> None:
    async with Runner(settings) as runner:
        await enqueue_slice(runner.redis, "00000000-0000-0000-0000-000000000001", "1", "NORMAL")
        # Over its tenant's quota: put back for a minute, not startable yet.
        await enqueue_slice(
            runner.redis, "00000000-0000-0000-0000-000000000002", "1", "HIGH", delay=60
        )
        later = await read_queue_status(runner.redis, now=time.time() + 90)
        assert later.deferred == 1
        assert sum(later.waiting.values()) == 1
        assert later.oldest_waiting_seconds is not None
        assert 89 <= later.oldest_waiting_seconds <= 91


async def test_a_worker_is_listed_while_it_heartbeats_and_dropped_after_its_ttl(
    operator: GraphQLClient, settings: Settings
) -> None:
    quick = settings.model_copy(
        update={"worker_heartbeat_seconds": 0.05, "worker_heartbeat_ttl_seconds": 0.5}
    )
    async with Runner(quick) as runner:
        heartbeat = Heartbeat(runner.deps, runner.redis)
        heartbeat.start()
        try:
            listed = await until(operator, lambda s: s["workers"])
            [worker] = listed["workers"]
            assert worker["id"] == runner.deps.worker_id
            assert worker["host"] == socket.gethostname()
            assert worker["runningSlices"] == 0
            seen = datetime.fromisoformat(worker["lastSeenAt"])
            renewed = await until(
                operator, lambda s: datetime.fromisoformat(s["workers"][0]["lastSeenAt"]) > seen
            )
            assert renewed["workers"][0]["startedAt"] == worker["startedAt"]

            # The worker dies without a word: its heartbeat is no longer renewed.
            assert heartbeat.task is not None
            heartbeat.task.cancel()
            started = time.monotonic()
            await until(operator, lambda s: not s["workers"], timeout=5)
            assert time.monotonic() - started < 2
        finally:
            await heartbeat.stop()


async def test_a_running_worker_shows_its_slice_and_leaves_when_it_stops(
    gql: GraphQLClient,
    operator: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 4, with_images=False)
    await queue_job(gql, ids, "NORMAL")
    slow = settings.model_copy(
        update={"batch_size": 1, "batch_pause_seconds": 0.3, "worker_heartbeat_seconds": 0.05}
    )
    worker = asyncio.create_task(run_worker(slow))
    try:
        busy = await until(
            operator,
            lambda s: (
                s["runningSlices"] == 1
                and s["workers"][:1] == s["workers"]
                and s["workers"][0]["runningSlices"] == 1
            ),
        )
        assert sum(entry["count"] for entry in busy["waiting"]) == 0
    finally:
        await worker
    # A worker that stops cleanly leaves the list at once, not after its TTL.
    assert (await status(operator))["workers"] == []


async def test_only_operator_tokens_see_the_queue(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, operator: GraphQLClient
) -> None:
    # A tenant's admin administers its tenant, not the service every tenant shares.
    for scope in ("read", "write", "admin"):
        token = await token_with(owner, tenant, scope, f"{scope} bot")
        response = await GraphQLClient(http, token).post(QUEUE_STATUS)
        assert_forbidden(response.json(), "operator")
    assert (await operator(QUEUE_STATUS))["queueStatus"]["workers"] == []
    viewer = await operator("{ viewer { tenant scopes } }")
    assert viewer == {"viewer": {"tenant": "ops", "scopes": ["operator"]}}
