"""Outside calls against a real HTTP server and the real Redis: what a call ends in, what
it counts, and what it shares with the other processes (each process is an OutsideCalls
of its own over the same Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from bulkops.config import Settings
from bulkops.outside import (
    CallFailed,
    Downloaded,
    Limits,
    OutsideCalls,
    ProviderUnavailable,
    Usage,
)
from tests.outside_server import ProviderServer, provider_server

# Retries that do not make the tests wait.
FAST = Limits(
    timeout_seconds=5.0,
    max_retries=3,
    backoff_seconds=0.01,
    max_backoff_seconds=0.02,
    open_seconds=0.3,
)


@pytest.fixture
async def provider() -> AsyncIterator[ProviderServer]:
    async with provider_server() as server:
        yield server


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def settings_for(redis_url: str, *, allow_private: bool = True) -> Settings:
    return Settings(REDIS_URL=redis_url, allow_private_networks=allow_private)


@pytest.fixture
async def outside(redis: Redis, redis_url: str) -> AsyncIterator[OutsideCalls]:
    calls = OutsideCalls(redis, settings_for(redis_url))
    yield calls
    await calls.aclose()


@pytest.fixture
async def other_process(redis_url: str) -> AsyncIterator[OutsideCalls]:
    client = Redis.from_url(redis_url)
    calls = OutsideCalls(client, settings_for(redis_url))
    yield calls
    await calls.aclose()
    await client.aclose()


async def send(
    outside: OutsideCalls,
    provider: ProviderServer,
    usage: Usage,
    *,
    limits: Limits = FAST,
    key: str = "bulkops-run-1",
    tokens: int = 0,
    name: str = "llm",
) -> dict[str, object]:
    response = await outside.send_json(
        name,
        limits,
        "POST",
        provider.url("/v1/chat/completions"),
        tenant_id="t1",
        usage=usage,
        idempotency_key=key,
        headers={"Authorization": "Bearer sk-test"},
        json={"model": "m", "messages": []},
        tokens=tokens,
    )
    body = response.json()
    assert isinstance(body, dict)
    return body


def status(code: int, headers: dict[str, str] | None = None, **body: object) -> Response:
    return JSONResponse(body or {"error": {"message": f"status {code}"}}, code, headers)


async def test_a_call_sends_its_body_and_key_and_returns_the_answer(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    usage = Usage()
    body = await send(outside, provider, usage, key="bulkops-job7-42")
    assert body == {"ok": True, "path": "/v1/chat/completions"}
    [seen] = provider.seen
    assert seen.headers["idempotency-key"] == "bulkops-job7-42"
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.body == b'{"model":"m","messages":[]}'
    assert (usage.calls, usage.retries, usage.rate_limited) == (1, 0, 0)


async def test_server_errors_are_tried_again_with_the_same_key(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    provider.answer(status(503), status(500), status(200, ok=True))
    usage = Usage()
    assert await send(outside, provider, usage, key="bulkops-run-9") == {"ok": True}
    assert [s.headers["idempotency-key"] for s in provider.seen] == ["bulkops-run-9"] * 3
    assert (usage.calls, usage.retries) == (3, 2)


async def test_a_client_error_fails_the_item_at_once_with_the_providers_message(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    provider.answer(status(400, error={"message": "maxOutputTokens is too large"}))
    usage = Usage()
    with pytest.raises(CallFailed) as failed:
        await send(outside, provider, usage)
    assert failed.value.code == "PROVIDER_ERROR"
    assert failed.value.status == 400
    assert "maxOutputTokens is too large" in failed.value.message
    assert len(provider.seen) == 1
    assert usage.calls == 1


async def test_the_provider_can_say_not_to_try_again(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    provider.answer(status(503, {"x-should-retry": "false"}))
    with pytest.raises(CallFailed) as failed:
        await send(outside, provider, Usage())
    assert failed.value.status == 503
    assert len(provider.seen) == 1


async def test_spent_retries_fail_the_item(outside: OutsideCalls, provider: ProviderServer) -> None:
    provider.answer(status(500, error="model crashed"))
    usage = Usage()
    with pytest.raises(CallFailed) as failed:
        await send(outside, provider, usage, limits=replace(FAST, max_retries=2))
    assert (failed.value.code, failed.value.status) == ("PROVIDER_ERROR", 500)
    assert "model crashed" in failed.value.message
    assert (usage.calls, usage.retries) == (3, 2)


async def test_a_429_is_counted_waited_out_and_slows_the_other_processes(
    outside: OutsideCalls, other_process: OutsideCalls, provider: ProviderServer
) -> None:
    provider.answer(status(429, {"retry-after-ms": "400"}), status(200, ok=True))
    first, second = Usage(), Usage()
    call = asyncio.create_task(send(outside, provider, first))
    # Once the 429 is back, the call waits for its next turn; nothing signals that moment.
    while first.waiting_now == 0:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    assert await send(other_process, provider, second, key="other") == {"ok": True}
    assert await call == {"ok": True}
    assert (first.calls, first.retries, first.rate_limited) == (2, 1, 1)
    assert first.waited_seconds > 0
    assert second.waited_seconds > 0
    assert second.rate_limited == 0


async def test_a_429_past_the_retries_fails_as_rate_limited_and_still_slows_the_others(
    outside: OutsideCalls, other_process: OutsideCalls, provider: ProviderServer
) -> None:
    provider.answer(status(429, {"retry-after": "1"}), status(200, ok=True))
    with pytest.raises(CallFailed) as failed:
        await send(outside, provider, Usage(), limits=replace(FAST, max_retries=0))
    assert (failed.value.code, failed.value.status) == ("RATE_LIMITED", 429)
    after = Usage()
    assert await send(other_process, provider, after) == {"ok": True}
    assert after.waited_seconds > 0


async def test_requests_per_second_are_shared_by_every_process(
    outside: OutsideCalls, other_process: OutsideCalls, provider: ProviderServer
) -> None:
    limits = replace(FAST, requests_per_second=4.0)
    usages = [Usage() for _ in range(10)]
    await asyncio.gather(
        *(
            send(calls, provider, usage, limits=limits, key=str(i))
            for i, (calls, usage) in enumerate(
                zip([outside, other_process] * 5, usages, strict=True)
            )
        )
    )
    assert len(provider.seen) == 10
    # One second's worth (4) goes at once; the rest wait for their turns, in whichever
    # process they are.
    assert sum(1 for u in usages if u.waited_seconds > 0) >= 5
    assert all(u.waiting_now == 0 for u in usages)


async def test_tokens_per_minute_are_settled_with_what_the_call_used(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    limits = replace(FAST, tokens_per_minute=60_000)
    # The whole minute's budget, estimated; the answer said it used 100.
    await send(outside, provider, Usage(), limits=limits, tokens=60_000)
    await outside.settle_tokens("llm", limits, estimated=60_000, actual=100)
    settled = Usage()
    await send(outside, provider, settled, limits=limits, tokens=1_000)
    assert settled.waited_seconds == 0
    # Unsettled, the budget is spent and the next call waits for it to refill.
    await send(outside, provider, Usage(), limits=limits, tokens=60_000, name="llm2")
    waiting = Usage()
    await send(outside, provider, waiting, limits=limits, tokens=300, name="llm2")
    assert waiting.waited_seconds > 0


async def test_a_failed_call_gives_its_estimated_tokens_back(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    limits = replace(FAST, tokens_per_minute=60_000)
    provider.answer(status(400), status(200, ok=True))
    with pytest.raises(CallFailed):
        await send(outside, provider, Usage(), limits=limits, tokens=60_000)
    after = Usage()
    await send(outside, provider, after, limits=limits, tokens=60_000)
    assert after.waited_seconds == 0


async def test_calls_in_flight_stay_within_the_concurrency(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.05)
        return status(200, ok=True)

    provider.answer(slow)
    limits = replace(FAST, concurrency=2)
    await asyncio.gather(
        *(send(outside, provider, Usage(), limits=limits, key=str(i)) for i in range(8))
    )
    assert len(provider.seen) == 8
    assert provider.most_in_flight <= 2


async def test_a_provider_that_is_down_stops_the_calls_of_every_process_until_it_answers(
    outside: OutsideCalls, other_process: OutsideCalls, provider: ProviderServer
) -> None:
    limits = replace(FAST, failures_to_open=3, max_retries=10)
    provider.answer(status(503, error="overloaded"))
    usage = Usage()
    with pytest.raises(ProviderUnavailable) as down:
        await send(outside, provider, usage, limits=limits)
    assert usage.calls == 3
    assert down.value.provider == "llm"
    assert "llm unavailable (503 Service Unavailable: overloaded)" in down.value.reason
    assert "next try" in down.value.reason
    assert down.value.next_try_at > time.time() - 1

    # Nobody spends an item on it meanwhile, in this process or another.
    with pytest.raises(ProviderUnavailable):
        await send(other_process, provider, Usage(), limits=limits)
    assert len(provider.seen) == 3

    provider.answer(status(200, ok=True))
    await asyncio.sleep(max(0.0, down.value.next_try_at - time.time()) + 0.05)
    assert await send(other_process, provider, Usage(), limits=limits) == {"ok": True}
    assert await send(outside, provider, Usage(), limits=limits) == {"ok": True}


async def test_a_probe_that_fails_opens_the_circuit_again(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    limits = replace(FAST, failures_to_open=2, max_retries=10)
    provider.answer(status(502))
    with pytest.raises(ProviderUnavailable) as down:
        await send(outside, provider, Usage(), limits=limits)
    await asyncio.sleep(max(0.0, down.value.next_try_at - time.time()) + 0.05)
    seen = len(provider.seen)
    with pytest.raises(ProviderUnavailable) as again:
        await send(outside, provider, Usage(), limits=limits)
    # One probe went out, and the next try is further away than the first cool-down.
    assert len(provider.seen) == seen + 1
    assert again.value.next_try_at > down.value.next_try_at


async def test_a_refused_connection_is_tried_again_then_fails(redis: Redis, redis_url: str) -> None:
    async with provider_server() as gone:
        url = gone.url("/v1")
    calls = OutsideCalls(redis, settings_for(redis_url))
    usage = Usage()
    try:
        with pytest.raises(CallFailed) as failed:
            await calls.send_json(
                "llm",
                replace(FAST, failures_to_open=None, max_retries=2),
                "POST",
                url,
                tenant_id="t1",
                usage=usage,
                idempotency_key="k",
                json={},
            )
    finally:
        await calls.aclose()
    assert failed.value.code == "UNREACHABLE"
    assert (usage.calls, usage.retries) == (3, 2)


async def test_an_attempt_past_its_timeout_fails_as_a_timeout(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    async def hang(request: Request) -> Response:
        await asyncio.sleep(30)
        return status(200, ok=True)

    provider.answer(hang)
    limits = replace(FAST, timeout_seconds=0.2, max_retries=1, failures_to_open=None)
    with pytest.raises(CallFailed) as failed:
        await send(outside, provider, Usage(), limits=limits)
    assert failed.value.code == "TIMEOUT"
    assert len(provider.seen) == 2


async def download(
    outside: OutsideCalls, url: str, *, max_bytes: int = 1_000_000, usage: Usage | None = None
) -> Downloaded:
    return await outside.download(
        "fetch:127.0.0.1",
        replace(FAST, max_retries=1),
        url,
        tenant_id="t1",
        usage=usage or Usage(),
        max_bytes=max_bytes,
    )


async def test_a_download_follows_redirects_to_its_body(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    async def route(request: Request) -> Response:
        if request.url.path == "/old":
            return Response(status_code=301, headers={"location": "/img/a.png"})
        return Response(b"\x89PNG-bytes", headers={"content-type": "Image/PNG; x=1"})

    provider.answer(route)
    got = await download(outside, provider.url("/old", host="localhost"))
    assert got.content == b"\x89PNG-bytes"
    assert got.content_type == "image/png"
    assert got.url == provider.url("/img/a.png", host="localhost")
    assert [s.path for s in provider.seen] == ["/old", "/img/a.png"]
    assert provider.seen[0].headers["host"] == f"localhost:{provider.port}"


async def test_a_download_past_its_size_is_refused(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    async def route(request: Request) -> Response:
        if request.url.path == "/declared":
            return Response(b"y" * 5000)
        return StreamingResponse(chunks())

    provider.answer(route)
    for path in ("/declared", "/streamed"):
        with pytest.raises(CallFailed) as failed:
            await download(outside, provider.url(path), max_bytes=4000)
        assert failed.value.code == "TOO_LARGE"
    assert len(provider.seen) == 2


async def test_a_missing_image_is_not_found_at_once(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    provider.answer(Response("gone", status_code=410))
    with pytest.raises(CallFailed) as failed:
        await download(outside, provider.url("/a.png"))
    assert (failed.value.code, failed.value.status) == ("NOT_FOUND", 410)
    assert len(provider.seen) == 1


async def test_redirect_loops_and_other_schemes_are_refused(
    outside: OutsideCalls, provider: ProviderServer
) -> None:
    async def route(request: Request) -> Response:
        if request.url.path == "/ftp":
            return Response(status_code=302, headers={"location": "file:///etc/passwd"})
        return Response(status_code=307, headers={"location": request.url.path})

    provider.answer(route)
    with pytest.raises(CallFailed) as loop:
        await download(outside, provider.url("/loop"))
    assert loop.value.code == "TOO_MANY_REDIRECTS"
    with pytest.raises(CallFailed) as scheme:
        await download(outside, provider.url("/ftp"))
    assert scheme.value.code == "INVALID_URL"
    for url in ("not a url", "ftp://example.com/a.png", "http://"):
        with pytest.raises(CallFailed) as bad:
            await download(outside, url)
        assert bad.value.code == "INVALID_URL"


async def test_private_addresses_are_refused_unless_allowed(
    redis: Redis, redis_url: str, provider: ProviderServer
) -> None:
    calls = OutsideCalls(redis, settings_for(redis_url, allow_private=False))
    try:
        for host in ("127.0.0.1", "localhost"):
            with pytest.raises(CallFailed) as refused:
                await download(calls, provider.url("/a.png", host=host))
            assert refused.value.code == "PRIVATE_NETWORK"
        # A URL a request named (a webhook's) is guarded when sent to as well.
        with pytest.raises(CallFailed) as hook:
            await calls.send_json(
                "webhook",
                FAST,
                "POST",
                provider.url("/hook"),
                tenant_id="t1",
                usage=Usage(),
                idempotency_key="evt-1",
                json={},
                guarded=True,
            )
        assert hook.value.code == "PRIVATE_NETWORK"
        # The provider the operator configured is not a request's URL: it may be local.
        assert (await send(calls, provider, Usage()))["ok"] is True
    finally:
        await calls.aclose()
    assert [s.path for s in provider.seen] == ["/v1/chat/completions"]


async def test_a_connection_the_host_closed_while_idle_is_not_used_again(
    outside: OutsideCalls,
) -> None:
    """A host that closes a kept-alive connection after its answer (as servers do past
    their keep-alive time): the next download opens another instead of failing on the
    closed one and trying again."""
    connections = 0

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\nPNG!")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    usage = Usage()
    try:
        for name in ("a", "b"):
            got = await download(outside, f"http://127.0.0.1:{port}/{name}.png", usage=usage)
            assert got.content == b"PNG!"
            # The close reaches the client before the next download starts.
            await asyncio.sleep(0.05)
    finally:
        server.close()
        await server.wait_closed()
    assert (usage.calls, usage.retries, connections) == (2, 0, 2)
