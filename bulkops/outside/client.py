"""The one client for outside calls: what a call sends and reads, over httpx. The rest is
in its parts: attempts.py (the loop of one call, `Limits`), limiter.py, retries.py,
circuit.py and network.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from redis.asyncio import Redis

from bulkops.config import Settings
from bulkops.outside.attempts import Attempts, Call, Limits
from bulkops.outside.errors import CallFailed
from bulkops.outside.network import GuardedTransport, tls_context
from bulkops.outside.responses import (
    ERROR_BODY_BYTES,
    MAX_JSON_BYTES,
    Answered,
    failure_of,
    media_type,
    provider_message,
    read_capped,
    read_response,
)
from bulkops.outside.retries import retry_after
from bulkops.outside.usage import Usage

# Limits lived here first; importing it from here still works.
__all__ = ["Downloaded", "Limits", "OutsideCalls", "Posted"]

USER_AGENT = "bulkops/0.1"
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Connections kept per process across every provider; each provider's own concurrency
# is the limit that matters.
_POOL = httpx.Limits(max_connections=512, max_keepalive_connections=64, keepalive_expiry=30)


@dataclass(frozen=True)
class Downloaded:
    """A downloaded body (read whole, within its size limit): `url` is where it came from
    after redirects, `content_type` the media type alone (`image/png`), lowercased."""

    url: str
    content: bytes
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Posted:
    """What one POST came to: the answer's `status` (None when none came: `error` says
    why), the wait it asked for (`Retry-After`, seconds) and, unless 2xx, its message."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


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
        self._attempts = Attempts(redis)
        # The provider the operator configured may be anywhere; what a request names
        # (an image URL) goes through the guard.
        self._client = _client(
            transport
            or httpx.AsyncHTTPTransport(verify=tls_context(), trust_env=False, limits=_POOL)
        )
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
        knows the real count. A call that raises has given its estimate back."""
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

        return await self._attempts.run(
            Call(
                provider=provider,
                limits=limits,
                send=attempt,
                tenant_id=tenant_id,
                usage=usage,
                tokens=tokens,
            )
        )

    async def post_once(
        self, url: str, *, content: bytes, headers: dict[str, str], timeout_seconds: float
    ) -> Posted:
        """One POST of `content` to a URL a request gave (a webhook's), through the
        private-network guard, with no retry, limiter or circuit: the caller keeps its own
        schedule of attempts (the webhook outbox). Never raises for what the receiver or
        the network does; redirects are not followed (a 3xx is a failed attempt)."""
        sent = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers}
        try:
            async with asyncio.timeout(timeout_seconds):
                request = self._guarded.build_request(
                    "POST", url, headers=sent, content=content, timeout=timeout_seconds
                )
                response = await self._guarded.send(request, stream=True)
                try:
                    if response.is_success:
                        return Posted(response.status_code)
                    body = await read_capped(response, ERROR_BODY_BYTES)
                finally:
                    await response.aclose()
        except CallFailed as exc:
            return Posted(None, error=exc.message)
        except Exception as exc:
            try:
                failure = failure_of(exc, timeout_seconds=timeout_seconds)
            except CallFailed as failed:
                return Posted(None, error=failed.message)
            if failure is None:
                raise
            return Posted(None, error=failure.message)
        phrase = f"{response.status_code} {response.reason_phrase}".strip()
        said = provider_message(body)
        return Posted(
            response.status_code,
            error=f"{phrase}: {said}" if said else phrase,
            retry_after=retry_after(response.headers),
        )

    async def settle_tokens(
        self, provider: str, limits: Limits, *, estimated: int, actual: int
    ) -> None:
        """Correct the per-minute token budget once the real usage is known."""
        await self._attempts.limiter.settle(
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
                    raise CallFailed(f"not an http(s) URL: {target}", code="INVALID_URL")
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

        return await self._attempts.run(
            Call(
                provider=provider,
                limits=limits,
                send=attempt,
                tenant_id=tenant_id,
                usage=usage,
                failed_code="DOWNLOAD_FAILED",
                not_found=True,
            )
        )


def _client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    # No cookies are kept: one client serves every tenant and every host.
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
