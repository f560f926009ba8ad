"""The one client for outside calls: limiter, retries, circuit and network guard around
httpx (see the module docstrings of limiter.py, retries.py, circuit.py and network.py for
the parts).

One attempt of a call, in order: the provider's circuit (refused at once while it is
open), a place among the process's `Limits.concurrency` calls in flight, a turn from the
shared limiter (the seconds waited are counted), then the request within
`Limits.timeout_seconds` for everything from connecting to the last byte read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar

import httpx
from redis.asyncio import Redis

from bulkops import metrics
from bulkops.config import Settings
from bulkops.outside import retries
from bulkops.outside.circuit import Circuit, Outcome, unavailable
from bulkops.outside.errors import CallFailed, ProviderUnavailable
from bulkops.outside.limiter import SharedLimiter
from bulkops.outside.network import GuardedTransport
from bulkops.outside.responses import (
    ERROR_BODY_BYTES,
    MAX_JSON_BYTES,
    Answered,
    failure_of,
    give_up,
    media_type,
    read_capped,
    read_response,
)
from bulkops.outside.usage import Usage

log = logging.getLogger(__name__)

T = TypeVar("T")

USER_AGENT = "bulkops/0.1 (+https://github.com/bulkops)"
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Connections kept per process across every provider; each provider's own concurrency
# is the limit that matters.
_POOL = httpx.Limits(max_connections=512, max_keepalive_connections=64, keepalive_expiry=30)


@dataclass(frozen=True)
class Limits:
    """How one provider may be called, shared by every process: `requests_per_second` and
    `tokens_per_minute` (None: no limit) through the limiter in Redis, at most
    `concurrency` calls in flight per process and per run, each attempt within
    `timeout_seconds`, at most `max_retries` attempts after the first and
    `max_retry_seconds` in all before the call fails.

    Retries wait a random time up to `backoff_seconds * 2**retry` (at most
    `max_backoff_seconds`) unless the provider names a wait. `failures_to_open`
    failures in a row that say the provider is down open its circuit for `open_seconds`
    (doubling while it stays down); None: no circuit."""

    requests_per_second: float | None = None
    tokens_per_minute: int | None = None
    concurrency: int = 8
    timeout_seconds: float = 60.0
    max_retries: int = 5
    max_retry_seconds: float = 120.0
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    failures_to_open: int | None = 5
    open_seconds: float = 10.0


@dataclass(frozen=True)
class Downloaded:
    """A downloaded body (read whole, within its size limit): `url` is where it came from
    after redirects, `content_type` the media type alone (`image/png`), lowercased."""

    url: str
    content: bytes
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)


class OutsideCalls:
    """Outside calls of one process. Build once (`OutsideCalls(redis, settings)`), close
    with `aclose()`.

    A `transport` replaces httpx's for every call (and with it the private-network
    guard, which lives in the transport)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self._transport = transport
        self._limiter = SharedLimiter(redis)
        self._circuit = Circuit(redis)
        self._slots = _Slots()
        # The provider the operator configured may be anywhere; what a request names
        # (an image URL) goes through the guard.
        self._client = _client(transport or httpx.AsyncHTTPTransport(trust_env=False, limits=_POOL))
        self._guarded = _client(
            transport
            or GuardedTransport(limits=_POOL, allow_private=settings.allow_private_networks)
        )

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._guarded.aclose()

    async def send_json(
        self,
        provider: str,
        limits: Limits,
        method: str,
        url: str,
        *,
        tenant_id: str,
        usage: Usage,
        idempotency_key: str,
        headers: dict[str, str] | None = None,
        json: Any = None,
        tokens: int = 0,
        guarded: bool = False,
    ) -> httpx.Response:
        """One call, through the shared limiter (one request, and `tokens` estimated tokens
        of the provider's per-minute budget), retried on timeouts, connection errors,
        408/409/429/5xx with full-jitter backoff (Retry-After / retry-after-ms win, up to a
        cap; a 429 slows every process calling `provider`). Sends `Idempotency-Key:
        idempotency_key` on every attempt. Returns the 2xx response, read (at most
        `MAX_JSON_BYTES`). `guarded`: `url` came from a request (a webhook's), so the
        private-network guard applies.

        Raises CallFailed (other 4xx, retries spent) or ProviderUnavailable (the circuit for
        `provider` is open). Counts into `usage` (the tokens in and out are the caller's to
        add, from the answer); the caller settles tokens with `settle_tokens` once it
        knows the real count. A call that raises gives its estimated tokens back."""
        client = self._guarded if guarded else self._client
        sent = {"User-Agent": USER_AGENT, **(headers or {}), "Idempotency-Key": idempotency_key}

        async def attempt() -> httpx.Response:
            request = client.build_request(
                method, url, headers=sent, json=json, timeout=limits.timeout_seconds
            )
            response = await client.send(request, stream=True)
            try:
                if not response.is_success:
                    raise Answered(response, await read_capped(response, ERROR_BODY_BYTES))
                return await read_response(response, MAX_JSON_BYTES)
            finally:
                await response.aclose()

        try:
            return await self._call(
                provider,
                limits,
                attempt,
                tenant_id=tenant_id,
                usage=usage,
                tokens=tokens,
                failed_code="PROVIDER_ERROR",
            )
        except Exception:
            await self.settle_tokens(provider, limits, estimated=tokens, actual=0)
            raise

    async def settle_tokens(
        self, provider: str, limits: Limits, *, estimated: int, actual: int
    ) -> None:
        """Correct the per-minute token budget once the real usage is known."""
        await self._limiter.settle(
            provider, tokens_per_minute=limits.tokens_per_minute, tokens=actual - estimated
        )

    async def download(
        self,
        provider: str,
        limits: Limits,
        url: str,
        *,
        tenant_id: str,
        usage: Usage,
        max_bytes: int,
    ) -> Downloaded:
        """GET `url` streamed, refused past `max_bytes` (CallFailed TOO_LARGE); redirects
        are followed by hand (at most `MAX_REDIRECTS`, http and https only), each target
        checked against the private-network guard (CallFailed PRIVATE_NETWORK); 404/410
        (CallFailed NOT_FOUND) and other 4xx → CallFailed; limiter, retries and circuit
        as for `send_json`. A whole redirect chain is one attempt."""
        client = self._guarded

        async def attempt() -> Downloaded:
            target = httpx.URL(url)
            for _ in range(MAX_REDIRECTS + 1):
                if target.scheme not in ("http", "https"):
                    raise CallFailed(f"not an http(s) URL: {target}", code="BAD_URL")
                request = client.build_request(
                    "GET",
                    target,
                    headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
                    timeout=limits.timeout_seconds,
                )
                response = await client.send(request, stream=True)
                try:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        target = target.join(location)
                        continue
                    if not response.is_success:
                        raise Answered(response, await read_capped(response, ERROR_BODY_BYTES))
                    content = await read_capped(response, max_bytes, too_large=True)
                    return Downloaded(
                        url=str(target),
                        content=content,
                        content_type=media_type(response.headers.get("content-type")),
                        headers=dict(response.headers),
                    )
                finally:
                    await response.aclose()
            raise CallFailed(f"more than {MAX_REDIRECTS} redirects", code="TOO_MANY_REDIRECTS")

        return await self._call(
            provider,
            limits,
            attempt,
            tenant_id=tenant_id,
            usage=usage,
            tokens=0,
            failed_code="DOWNLOAD_FAILED",
            not_found=True,
        )

    async def _call(
        self,
        provider: str,
        limits: Limits,
        attempt: Callable[[], Awaitable[T]],
        *,
        tenant_id: str,
        usage: Usage,
        tokens: int,
        failed_code: str,
        not_found: bool = False,
    ) -> T:
        """Attempts of one call until one answers, the call fails for good, or the
        provider's circuit opens."""
        family = _family(provider)
        retry = 0
        # The retry budget counts attempts and backoff, not turns waited at the limiter.
        spent = 0.0
        while True:
            probe = await self._enter(provider, limits)
            async with self._slots.hold(provider, limits.concurrency):
                await self._wait_turn(provider, limits, usage, tokens if retry == 0 else 0)
                usage.calls += 1
                usage.retries += 1 if retry else 0
                started = time.monotonic()
                try:
                    async with asyncio.timeout(limits.timeout_seconds):
                        result = await attempt()
                except CallFailed as exc:
                    # The answer fails the item (too large, ...) or the call never left.
                    heard = Outcome.ALIVE if exc.status is not None else Outcome.NEUTRAL
                    await self._record(provider, limits, heard, probe=probe, reason="")
                    metrics.PROVIDER_CALLS.labels(family, "failed").inc()
                    raise
                except Exception as exc:
                    try:
                        failure = failure_of(exc, timeout_seconds=limits.timeout_seconds)
                    except CallFailed:
                        # A URL httpx cannot call, an answer it cannot decode.
                        await self._record(
                            provider, limits, Outcome.NEUTRAL, probe=probe, reason=""
                        )
                        metrics.PROVIDER_CALLS.labels(family, "failed").inc()
                        raise
                    if failure is None:
                        await self._record(
                            provider, limits, Outcome.NEUTRAL, probe=probe, reason=""
                        )
                        metrics.PROVIDER_CALLS.labels(family, "failed").inc()
                        raise
                else:
                    await self._record(provider, limits, Outcome.ALIVE, probe=probe, reason="")
                    metrics.PROVIDER_CALLS.labels(family, "ok").inc()
                    return result
                finally:
                    spent += time.monotonic() - started
            metrics.PROVIDER_CALLS.labels(family, _outcome_label(failure)).inc()
            if failure.rate_limited:
                usage.rate_limited += 1
            heard = Outcome.DOWN if failure.down else Outcome.ALIVE
            left = await self._record(provider, limits, heard, probe=probe, reason=failure.message)
            if failure.down and left > 0:
                raise unavailable(provider, failure.message, left)
            delay = retries.delay_before(
                retry,
                failure,
                backoff_seconds=limits.backoff_seconds,
                max_backoff_seconds=limits.max_backoff_seconds,
            )
            fields = {"tenant_id": tenant_id, "provider": provider}
            if (
                not failure.retryable
                or retry >= limits.max_retries
                or spent + delay > limits.max_retry_seconds
            ):
                log.debug("call to %s failed: %s", provider, failure.message, extra=fields)
                raise give_up(provider, failure, failed_code=failed_code, not_found=not_found)
            log.debug(
                "call to %s is tried again in %.2f s: %s",
                provider,
                delay,
                failure.message,
                extra=fields,
            )
            if failure.rate_limited:
                # Every process waits it out at the limiter, this call's next turn too.
                await self._limiter.pause(provider, delay)
            else:
                await asyncio.sleep(delay)
            spent += delay
            retry += 1

    async def _enter(self, provider: str, limits: Limits) -> bool:
        """Through the provider's circuit (ProviderUnavailable while it is open); whether
        this attempt is its probe."""
        if limits.failures_to_open is None:
            return False
        try:
            return await self._circuit.enter(provider, probe_seconds=limits.timeout_seconds + 5)
        except ProviderUnavailable:
            metrics.PROVIDER_CALLS.labels(_family(provider), "unavailable").inc()
            raise

    async def _wait_turn(self, provider: str, limits: Limits, usage: Usage, tokens: int) -> None:
        """Wait for a turn at the shared limiter (and out any 429 pause set meanwhile)."""
        wait = await self._limiter.reserve(
            provider,
            requests_per_second=limits.requests_per_second,
            tokens_per_minute=limits.tokens_per_minute,
            tokens=tokens,
        )
        waited = 0.0
        usage.waiting_now += 1
        try:
            while wait > 0:
                await asyncio.sleep(wait)
                waited += wait
                wait = await self._limiter.pause_left(provider)
        finally:
            usage.waiting_now -= 1
            if waited:
                usage.waited_seconds += waited
                metrics.PROVIDER_WAIT.labels(_family(provider)).inc(waited)

    async def _record(
        self, provider: str, limits: Limits, outcome: Outcome, *, probe: bool, reason: str
    ) -> float:
        if limits.failures_to_open is None:
            return 0.0
        return await self._circuit.record(
            provider,
            outcome,
            probe=probe,
            failures_to_open=limits.failures_to_open,
            open_seconds=limits.open_seconds,
            reason=reason,
        )


def _client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    # No cookies are kept: one client serves every tenant and every host.
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


class _Slots:
    """The calls in flight per provider in this process. A provider's semaphore is sized
    by the call that makes it (one provider has one set of limits) and dropped once no
    call holds or awaits it, so that one per image host does not pile up."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, provider: str, size: int) -> AsyncIterator[None]:
        semaphore, users = self._held.get(provider) or (asyncio.Semaphore(size), 0)
        self._held[provider] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._held[provider]
            if users == 1:
                del self._held[provider]
            else:
                self._held[provider] = (semaphore, users - 1)


def _family(provider: str) -> str:
    """The metrics' label of a provider: `fetch` for every `fetch:HOST`."""
    return provider.split(":", 1)[0]


def _outcome_label(failure: retries.Failure) -> str:
    if failure.kind != "status":
        return failure.kind
    if failure.rate_limited:
        return "rate_limited"
    assert failure.status is not None
    return "server_error" if failure.status >= 500 else "client_error"
