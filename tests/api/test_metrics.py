"""Prometheus metrics as an operator sees them: `/metrics` of the API and of a worker,
scraped and parsed after real jobs, requests and subscriptions.

The default registry is shared by every test of the session (and the API and the worker
run in this one process), so counters are compared before and after, never read alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from bulkops.config import Settings
from bulkops.metrics import serve
from bulkops.storage import Storage
from tests.api.queries import CANCEL, JOB_SUBSCRIPTION, SET_STATUS
from tests.support import (
    GraphQLClient,
    Subscription,
    Tenant,
    make_products,
    run_worker,
    storage_env,
)

OPERATION = "setProductStatus"
JOBS_SUBSCRIPTION = "subscription { jobs { id status } }"


@dataclass(frozen=True)
class Scrape:
    """One scrape: the families it declares and the value of every sample."""

    families: dict[str, str]
    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        families: dict[str, str] = {}
        values = {}
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            for sample in family.samples:
                values[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(families, values)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; a series not created yet is zero."""
        return self.values.get((name, frozenset(labels.items())), 0.0)

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample, labels in self.values if sample == name]


async def scrape(http: httpx.AsyncClient, url: str = "/metrics") -> Scrape:
    response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape.parse(response.text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def worker_metrics_url() -> Iterator[str]:
    """A worker's metrics server, as `bulkops worker --metrics-port` starts it."""
    port = _free_port()
    stop = serve(port, host="127.0.0.1")
    yield f"http://127.0.0.1:{port}/metrics"
    stop()


async def queue_status_job(gql: GraphQLClient, priority: str = "NORMAL") -> str:
    data = await gql(
        SET_STATUS,
        {
            "selection": {"filter": {}},
            "status": "ACTIVE",
            "options": {"mode": "BACKGROUND", "priority": priority},
        },
    )
    result = data["setProductStatus"]
    assert result["__typename"] == "JobQueued", result
    return str(result["job"]["id"])


async def test_every_declared_metric_is_exposed(http: httpx.AsyncClient) -> None:
    found = (await scrape(http)).families
    # The parser names counter families without their `_total`.
    assert found == found | {
        "bulkops_jobs": "counter",
        "bulkops_items": "counter",
        "bulkops_batch_duration_seconds": "histogram",
        "bulkops_job_pickup_seconds": "histogram",
        "bulkops_queue_depth": "gauge",
        "bulkops_running_jobs": "gauge",
        "bulkops_subscriptions": "gauge",
        "bulkops_provider_calls": "counter",
        "bulkops_provider_wait_seconds": "counter",
        "bulkops_webhook_deliveries": "counter",
        "bulkops_http_requests": "counter",
        "bulkops_http_request_duration_seconds": "histogram",
    }


async def test_a_background_job_moves_the_counters_of_the_api_and_the_worker(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    worker_metrics_url: str,
) -> None:
    await make_products(owner, storage, tenant, 25, with_images=False)
    await queue_status_job(gql, "HIGH")
    await queue_status_job(gql, "LOW")
    before = await scrape(http)
    # Read from Redis when scraped: the two slices wait, each at its priority.
    assert before.value("bulkops_queue_depth", priority="HIGH") == 1
    assert before.value("bulkops_queue_depth", priority="NORMAL") == 0
    assert before.value("bulkops_queue_depth", priority="LOW") == 1

    await run_worker(settings.model_copy(update={"batch_size": 10}))

    async with httpx.AsyncClient(timeout=30) as client:
        from_worker = await scrape(client, worker_metrics_url)
    after = await scrape(http)
    for seen in (after, from_worker):

        def moved(name: str, seen: Scrape = seen, **labels: str) -> float:
            return seen.value(name, **labels) - before.value(name, **labels)

        assert moved("bulkops_jobs_total", operation=OPERATION, status="SUCCEEDED") == 2
        assert moved("bulkops_jobs_total", operation=OPERATION, status="FAILED") == 0
        # The first job changes all 25; the second finds them ACTIVE already.
        assert moved("bulkops_items_total", operation=OPERATION, outcome="succeeded") == 25
        assert moved("bulkops_items_total", operation=OPERATION, outcome="skipped") == 25
        assert moved("bulkops_items_total", operation=OPERATION, outcome="failed") == 0
        # Three batches of at most 10 for each job, one slice each.
        assert moved("bulkops_batch_duration_seconds_count", operation=OPERATION) == 6
        assert moved("bulkops_job_pickup_seconds_count") == 2
        assert moved("bulkops_running_jobs") == 0
    assert after.value("bulkops_queue_depth", priority="HIGH") == 0
    assert after.value("bulkops_queue_depth", priority="LOW") == 0


async def test_bulkops_worker_serves_its_own_metrics_on_the_port_it_is_given(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    await make_products(owner, storage, tenant, 12, with_images=False)
    await queue_status_job(gql)
    port = _free_port()
    assert settings.database_url and settings.redis_url
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "BULKOPS_DATA_DIR": str(tmp_path),
        **storage_env(settings),
        "BULKOPS_BATCH_SIZE": "5",
        "BULKOPS_WORKER_METRICS_HOST": "127.0.0.1",
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bulkops", "worker", "--metrics-port", str(port)),
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            # A process of its own: its counters start at zero, so they are read as they are.
            seen = await _scrape_until_job_ended(client, f"http://127.0.0.1:{port}/metrics")
    finally:
        worker.send_signal(signal.SIGTERM)
        await worker.wait()
        log.close()
    assert seen.value("bulkops_items_total", operation=OPERATION, outcome="succeeded") == 12
    assert seen.value("bulkops_batch_duration_seconds_count", operation=OPERATION) == 3
    assert seen.value("bulkops_job_pickup_seconds_count") == 1
    assert seen.value("bulkops_running_jobs") == 0
    # Declared at the worker's start for every operation: at zero until one ends so.
    declared = frozenset({("operation", "deleteProducts"), ("status", "FAILED")})
    assert seen.values[("bulkops_jobs_total", declared)] == 0


async def _scrape_until_job_ended(client: httpx.AsyncClient, url: str) -> Scrape:
    """Scrape the worker until it counts the job's end (the test's timeout bounds it)."""
    labels = {"operation": OPERATION, "status": "SUCCEEDED"}
    while True:
        try:
            seen = await scrape(client, url)
        except httpx.TransportError:  # not listening yet
            seen = None
        if seen is not None and seen.value("bulkops_jobs_total", **labels) == 1:
            return seen
        await asyncio.sleep(0.1)


async def test_an_inline_run_counts_its_items_and_a_dry_run_nothing(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    await make_products(owner, storage, tenant, 4, with_images=False)
    before = await scrape(http)
    for dry_run in (True, False):
        data = await gql(
            SET_STATUS,
            {
                "selection": {"filter": {}},
                "status": "ARCHIVED",
                "options": {"mode": "INLINE", "dryRun": dry_run},
            },
        )
        assert data["setProductStatus"]["succeeded"] == 4
    after = await scrape(http)
    items = "bulkops_items_total"
    assert (
        after.value(items, operation=OPERATION, outcome="succeeded")
        - before.value(items, operation=OPERATION, outcome="succeeded")
        == 4
    )
    # An inline run is no job.
    for status in ("SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED"):
        labels = {"operation": OPERATION, "status": status}
        assert after.value("bulkops_jobs_total", **labels) == before.value(
            "bulkops_jobs_total", **labels
        )


async def test_a_queued_job_cancelled_counts_as_cancelled(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    await make_products(owner, storage, tenant, 3, with_images=False)
    job_id = await queue_status_job(gql)
    before = await scrape(http)
    assert (await gql(CANCEL, {"id": job_id}))["cancelJob"]["status"] == "CANCELLED"
    after = await scrape(http)
    labels = {"operation": OPERATION, "status": "CANCELLED"}
    assert (
        after.value("bulkops_jobs_total", **labels) - before.value("bulkops_jobs_total", **labels)
        == 1
    )


async def _legacy_subscription(ws_url: str, token: str, job_id: str) -> websockets.ClientConnection:
    """A `job` subscription over the legacy graphql-ws protocol, once its first result came."""
    ws = await websockets.connect(ws_url, subprotocols=[websockets.Subprotocol("graphql-ws")])
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": JOB_SUBSCRIPTION, "variables": {"id": job_id}}
    await ws.send(json.dumps({"id": "1", "type": "start", "payload": payload}))
    while (message := json.loads(await ws.recv()))["type"] == "ka":
        pass
    assert message["type"] == "data", message
    return ws


async def test_open_subscriptions_are_counted_per_client_until_they_close(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    ws_url: str,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    await make_products(owner, storage, tenant, 2, with_images=False)
    job_id = await queue_status_job(gql)
    before = (await scrape(http)).value("bulkops_subscriptions")
    clients = [Subscription(ws_url, tenant.token) for _ in range(3)]
    for client in clients:
        await client.connect()
    # Two identical `job` subscriptions share one execution; each client still counts.
    for client in clients[:2]:
        await client.start(JOB_SUBSCRIPTION, {"id": job_id})
        assert (await client.next())["type"] == "next"
    await clients[2].start(JOBS_SUBSCRIPTION, {})
    # A query over the socket is no subscription.
    await clients[2].start("query { viewer { tenant } }", {}, sub_id="2")
    legacy = await _legacy_subscription(ws_url, tenant.token, job_id)
    try:
        await subscriptions_reach(http, before + 4)
    finally:
        for client in clients:
            await client.close()
        await legacy.close()
    # A closed socket ends its operations a moment later.
    await subscriptions_reach(http, before)


async def subscriptions_reach(http: httpx.AsyncClient, expected: float) -> None:
    """Scrape until the gauge shows `expected` (the test's timeout bounds the wait)."""
    seen = None
    while seen != expected:
        if seen is not None:
            await asyncio.sleep(0.05)
        seen = (await scrape(http)).value("bulkops_subscriptions")


async def test_requests_are_counted_by_route_template_never_by_path(
    http: httpx.AsyncClient,
) -> None:
    job_id = str(uuid.uuid4())
    before = await scrape(http)
    assert (await http.get(f"/jobs/{job_id}/errors.csv")).status_code == 401
    assert (await http.get(f"/no/such/{job_id}")).status_code == 404
    assert (await http.post("/healthz")).status_code == 405
    after = await scrape(http)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    errors = "/jobs/{job_id}/errors.csv"
    assert moved("bulkops_http_requests_total", route=errors, status="401") == 1
    assert moved("bulkops_http_request_duration_seconds_count", route=errors) == 1
    assert moved("bulkops_http_requests_total", route="unmatched", status="404") == 1
    assert moved("bulkops_http_requests_total", route="/healthz", status="405") == 1
    # The scrape before this one is counted by now.
    assert moved("bulkops_http_requests_total", route="/metrics", status="200") == 1
    routes = {labels["route"] for labels in after.labels_of("bulkops_http_requests_total")}
    assert not any(job_id in route for route in routes)
