"""Per-tenant rate limits, as clients see them: 429 with Retry-After and RATE_LIMITED over
HTTP, close code 4429 over websockets, `bulkops watch` waiting its turn, and requests going
through when Redis fails.

Each test allows 3 requests in any second and 3 in any minute, so the 4th request is refused
however slowly the machine runs the test."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from bulkops.commands.watch import watch
from bulkops.config import Settings
from bulkops.constants import RATE_LIMIT_PREFIX
from bulkops.storage import Storage
from bulkops.web.rate_limit import RateLimiter
from tests.api.queries import DELETE, JOB_SUBSCRIPTION
from tests.support import GraphQLClient, Tenant, make_products, run_worker

ALLOWED = 3
QUERY = {"query": "{ products { totalCount } }"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"rate_limit_burst": ALLOWED, "rate_limit_per_second": ALLOWED / 60}
    )


def bearer(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}"}


async def use_up(http: httpx.AsyncClient, tenant: Tenant, count: int = ALLOWED) -> None:
    for _ in range(count):
        response = await http.post("/graphql", json=QUERY, headers=bearer(tenant))
        assert response.status_code == 200, response.text


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 60
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert retry_after in error["message"]


async def test_graphql_over_the_limit_is_429_with_retry_after(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await use_up(http, tenant)
    response = await http.post("/graphql", json=QUERY, headers=bearer(tenant))
    assert_rate_limited(response)
    assert response.json()["data"] is None
    response = await http.get("/graphql", params=QUERY, headers=bearer(tenant))
    assert_rate_limited(response)


@pytest.mark.parametrize(
    "path",
    [
        "/export/products.csv",
        "/export/products.jsonl",
        "/jobs/1/errors.csv",
        "/jobs/1/match-results.csv",
        "/jobs/1/match-results.jsonl",
        "/files/1/images/1.svg",
    ],
)
async def test_every_authenticated_route_is_limited(
    http: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    await use_up(http, tenant)
    assert_rate_limited(await http.get(path, headers=bearer(tenant)))


async def test_one_tenant_over_its_limit_leaves_others_alone(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await use_up(http, tenant)
    assert (await http.post("/graphql", json=QUERY, headers=bearer(tenant))).status_code == 429
    await use_up(http, other_tenant)
    # Without a valid token nothing is counted: the answer stays 401.
    for _ in range(ALLOWED + 1):
        response = await http.post("/graphql", json=QUERY, headers={"Authorization": "Bearer x"})
        assert response.status_code == 401


async def open_socket(ws_url: str, tenant: Tenant, protocol: str = "graphql-transport-ws") -> Any:
    ws = await websockets.connect(ws_url, subprotocols=[websockets.Subprotocol(protocol)])
    await ws.send(
        json.dumps(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {tenant.token}"}}
        )
    )
    return ws


async def close_of(ws: Any) -> tuple[int, str]:
    """The code and reason the server closed `ws` with."""
    await asyncio.wait_for(ws.wait_closed(), 10)
    return ws.close_code, ws.close_reason


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_websocket_connection_over_the_limit_is_closed_with_4429(
    http: httpx.AsyncClient, tenant: Tenant, ws_url: str, protocol: str
) -> None:
    await use_up(http, tenant)
    ws = await open_socket(ws_url, tenant, protocol)
    assert await close_of(ws) == (4429, "Too many requests")


@pytest.mark.parametrize(
    ("protocol", "subscribe"), [("graphql-transport-ws", "subscribe"), ("graphql-ws", "start")]
)
async def test_a_subscription_over_the_limit_closes_the_websocket_with_4429(
    http: httpx.AsyncClient, tenant: Tenant, ws_url: str, protocol: str, subscribe: str
) -> None:
    await use_up(http, tenant, ALLOWED - 1)
    ws = await open_socket(ws_url, tenant, protocol)
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(
        json.dumps(
            {
                "id": "1",
                "type": subscribe,
                "payload": {"query": JOB_SUBSCRIPTION, "variables": {"id": "1"}},
            }
        )
    )
    assert await close_of(ws) == (4429, "Too many requests")


async def test_watch_waits_and_subscribes_again_when_over_the_limit(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    server: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    gql = GraphQLClient(http, tenant.token)
    options = {"mode": "BACKGROUND"}
    queued = await gql(DELETE, {"selection": {"filter": {}}, "options": options})
    job_id = queued["deleteProducts"]["job"]["id"]
    await run_worker(settings)
    await use_up(http, tenant, ALLOWED - 1)
    waits: list[float] = []

    async def time_passes(seconds: float) -> None:
        # Instead of waiting for the windows to move on, empty them.
        waits.append(seconds)
        redis = aioredis.from_url(settings.redis_url or "")
        try:
            async for key in redis.scan_iter(f"{RATE_LIMIT_PREFIX}:*"):
                await redis.delete(key)
        finally:
            await redis.aclose()

    capsys.readouterr()
    assert await watch(server, tenant.token, job_id, sleep=time_passes) == 0
    out, err = capsys.readouterr()
    assert waits == [1.0]
    assert "too many requests" in err
    assert out.strip() == "SUCCEEDED"


async def test_watch_honours_retry_after_of_a_429_handshake(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    server: str,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    gql = GraphQLClient(http, tenant.token)
    queued = await gql(DELETE, {"selection": {"filter": {}}, "options": {"mode": "BACKGROUND"}})
    await run_worker(settings)
    upstream = urlsplit(server)
    refused = 0

    # A proxy in front of the API (as a load balancer limiting requests would be): its first
    # websocket handshake is answered 429, the next ones go through.
    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal refused
        if not refused:
            refused += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()
            return
        api_reader, api_writer = await asyncio.open_connection(upstream.hostname, upstream.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, api_writer), pipe(api_reader, writer))

    front = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = front.sockets[0].getsockname()[1]
    waits: list[float] = []

    async def time_passes(seconds: float) -> None:
        waits.append(seconds)

    try:
        job_id = queued["deleteProducts"]["job"]["id"]
        code = await watch(f"http://127.0.0.1:{port}", tenant.token, job_id, sleep=time_passes)
    finally:
        front.close()
        await front.wait_closed()
    assert code == 0
    assert waits == [7]


async def test_requests_go_through_when_redis_fails(
    http: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await use_up(http, tenant, 1)
    redis = aioredis.from_url(settings.redis_url or "")
    try:
        keys = [key async for key in redis.scan_iter(f"{RATE_LIMIT_PREFIX}:*")]
        assert keys
        # A key of the wrong type makes every command of the limiter fail, as Redis would
        # when it is out of memory or read-only.
        for key in keys:
            await redis.delete(key)
            await redis.set(key, "not a list")
    finally:
        await redis.aclose()
    with caplog.at_level(logging.WARNING, logger="bulkops.web.rate_limit"):
        await use_up(http, tenant, ALLOWED * 2)
    warnings = [r for r in caplog.records if "rate limits are not enforced" in r.getMessage()]
    assert len(warnings) == 1


async def test_the_limiter_lets_requests_through_when_redis_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    limiter = RateLimiter(f"redis://127.0.0.1:{port}/0", burst=1, per_second=1)
    try:
        for _ in range(3):
            await limiter.hit("1")
    finally:
        await limiter.close()
