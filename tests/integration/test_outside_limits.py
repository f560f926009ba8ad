"""What the shared limits and the circuit add up to across processes (each an OutsideCalls
of its own over the same Redis), as a provider sees it: its own rate limit never hit,
tenants served fairly, an outage waited out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import pytest
from redis.asyncio import Redis

from bulkops.config import Settings
from bulkops.outside import (
    CallFailed,
    Limits,
    OutsideCalls,
    ProviderUnavailable,
    Usage,
    check_public_url,
)
from tests.outside_server import ProviderServer, provider_server

Processes = Callable[[int], Coroutine[Any, Any, list[OutsideCalls]]]


@pytest.fixture
async def provider() -> AsyncIterator[ProviderServer]:
    async with provider_server() as server:
        yield server


@pytest.fixture
async def processes(redis_url: str) -> AsyncIterator[Processes]:
    """`await processes(n)`: n OutsideCalls, each with a Redis connection of its own."""
    async with AsyncExitStack() as stack:

        async def make(count: int) -> list[OutsideCalls]:
            made = []
            for _ in range(count):
                redis = Redis.from_url(redis_url)
                stack.push_async_callback(redis.aclose)
                calls = OutsideCalls(redis, Settings(REDIS_URL=redis_url))
                stack.push_async_callback(calls.aclose)
                made.append(calls)
            return made

        yield make


async def call(
    outside: OutsideCalls,
    provider: ProviderServer,
    limits: Limits,
    *,
    tenant: str = "t1",
    key: str = "k",
    usage: Usage | None = None,
) -> None:
    await outside.send_json(
        "llm",
        limits,
        "POST",
        provider.url("/v1/chat/completions"),
        tenant_id=tenant,
        usage=usage or Usage(),
        idempotency_key=key,
        headers={"x-tenant": tenant},
        json={},
    )


async def test_processes_together_stay_under_the_providers_own_limit(
    provider: ProviderServer, processes: Processes
) -> None:
    provider.limit_per_second = 20
    limits = Limits(requests_per_second=16, backoff_seconds=0.01, max_backoff_seconds=0.05)
    first, second = await processes(2)
    usages = [Usage() for _ in range(32)]
    await asyncio.gather(
        *(
            call(first if i % 2 else second, provider, limits, key=str(i), usage=usage)
            for i, usage in enumerate(usages)
        )
    )
    assert len(provider.seen) == 32
    assert not any(s.refused for s in provider.seen)
    assert provider.busiest_second() <= 20
    assert sum(u.rate_limited for u in usages) == 0


async def test_a_small_job_is_not_starved_by_a_big_one_of_another_tenant(
    provider: ProviderServer, processes: Processes
) -> None:
    limits = Limits(requests_per_second=20, concurrency=16)
    *big_workers, small_worker = await processes(4)
    big = asyncio.gather(
        *(
            call(big_workers[i % 3], provider, limits, tenant="big", key=f"big-{i}")
            for i in range(80)
        )
    )
    while len(provider.seen) < 5:  # noqa: ASYNC110 (the big job is under way)
        await asyncio.sleep(0.01)
    # The big job has 48 calls in flight or waiting now (3 processes x 16) and more behind.
    small_came = len(provider.seen)
    await asyncio.gather(
        *(call(small_worker, provider, limits, tenant="small", key=f"s-{i}") for i in range(6))
    )
    await big
    order = [s.headers["x-tenant"] for s in provider.seen]
    assert order.count("small") == 6
    # Served in turns with the big job (about one big call between two small ones, plus
    # the few already booked), not after the 48 big calls waiting when it came (first
    # come, first served would let 43 or more through first).
    last_small = len(order) - 1 - order[::-1].index("small")
    assert order[small_came:last_small].count("big") <= 30
    assert order[last_small + 1 :].count("big") > 0


async def test_an_outage_stops_the_calls_until_the_provider_is_back(
    provider: ProviderServer, processes: Processes
) -> None:
    limits = Limits(
        timeout_seconds=2.0,
        max_retries=10,
        backoff_seconds=0.01,
        max_backoff_seconds=0.05,
        failures_to_open=3,
        open_seconds=0.5,
    )
    first, second = await processes(2)
    await provider.stop()
    with pytest.raises(ProviderUnavailable) as down:
        await call(first, provider, limits)
    assert "next try" in down.value.reason
    with pytest.raises(ProviderUnavailable):
        await call(second, provider, limits)

    await provider.start()
    await asyncio.sleep(max(0.0, down.value.next_try_at - time.time()) + 0.05)
    usage = Usage()
    await call(second, provider, limits, usage=usage)
    await call(first, provider, limits)
    assert usage.calls == 1
    assert len(provider.seen) == 2


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:8000/hook", "PRIVATE_NETWORK"),
        ("http://localhost/hook", "PRIVATE_NETWORK"),
        ("https://169.254.169.254/latest/meta-data", "PRIVATE_NETWORK"),
        ("http://[::ffff:10.0.0.1]/", "PRIVATE_NETWORK"),
        ("ftp://example.com/a.png", "INVALID_URL"),
        ("not a url", "INVALID_URL"),
    ],
)
async def test_urls_into_private_networks_are_refused(url: str, code: str) -> None:
    with pytest.raises(CallFailed) as refused:
        await check_public_url(url, allow_private=False)
    assert refused.value.code == code


async def test_private_urls_pass_when_allowed() -> None:
    await check_public_url("http://127.0.0.1:8000/hook", allow_private=True)
