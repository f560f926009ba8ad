"""The one client for outside calls: limiter, retries, circuit and network guard around
httpx. (Interface; see the module docstrings of limiter.py, retries.py, circuit.py and
network.py for the parts.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from bulkops.config import Settings
from bulkops.outside.usage import Usage


@dataclass(frozen=True)
class Limits:
    """How one provider may be called, shared by every process: `requests_per_second` and
    `tokens_per_minute` (None: no limit) through the limiter in Redis, at most
    `concurrency` calls in flight per process and per run, each attempt within
    `timeout_seconds`, at most `max_retries` attempts after the first and
    `max_retry_seconds` in all before the call fails."""

    requests_per_second: float | None = None
    tokens_per_minute: int | None = None
    concurrency: int = 8
    timeout_seconds: float = 60.0
    max_retries: int = 5
    max_retry_seconds: float = 120.0


@dataclass(frozen=True)
class Downloaded:
    """A downloaded body (read whole, within its size limit)."""

    url: str
    content: bytes
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)


class OutsideCalls:
    """Outside calls of one process. Build once (`OutsideCalls(redis, settings)`), close
    with `aclose()`."""

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

    async def aclose(self) -> None:
        return None

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
    ) -> httpx.Response:
        """One call, through the shared limiter (one request, and `tokens` estimated tokens
        of the provider's per-minute budget), retried on timeouts, connection errors,
        408/409/429/5xx with full-jitter backoff (Retry-After / retry-after-ms win, up to a
        cap; a 429 slows every process calling `provider`). Sends `Idempotency-Key:
        idempotency_key` on every attempt. Returns the 2xx response, read.

        Raises CallFailed (other 4xx, retries spent) or ProviderUnavailable (the circuit for
        `provider` is open). Counts into `usage`; the caller settles tokens with
        `settle_tokens` once it knows the real count."""
        raise NotImplementedError

    async def settle_tokens(
        self, provider: str, limits: Limits, *, estimated: int, actual: int
    ) -> None:
        """Correct the per-minute token budget once the real usage is known."""
        raise NotImplementedError

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
        are followed by hand, each target checked against the private-network guard
        (CallFailed PRIVATE_NETWORK); 404/410 and other 4xx → CallFailed; limiter, retries
        and circuit as for `send_json`."""
        raise NotImplementedError
