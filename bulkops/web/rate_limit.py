"""Requests per tenant, counted in Redis so that every API process shares one count.

The limiter is asked once per authenticated HTTP request (in `bulkops.web.auth`), once per
websocket `connection_init` and once per websocket operation (`subscribe`, or `start` in
the legacy protocol). Over the limit, HTTP answers 429 with `Retry-After` and
`RATE_LIMITED`; a websocket is closed with 4429."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from starlette.requests import HTTPConnection
from starlette.responses import Response
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import StartMessage

from bulkops.config import Settings
from bulkops.constants import RATE_LIMIT_PREFIX
from bulkops.errors import BulkopsError
from bulkops.graphql.context import Context
from bulkops.graphql.shared_streams import SharedStreamsHandler
from bulkops.graphql.ws_protocols import LegacyWSHandler
from bulkops.services.jwt_auth import AuthUnavailable
from bulkops.web.responses import error_response

log = logging.getLogger(__name__)

WS_TOO_MANY_REQUESTS = 4429
# The standard close code for "try again later": a JWT could not be checked just now.
WS_TRY_AGAIN_LATER = 1013
# Every request waits on the limiter: a Redis that does not answer within this is taken
# as down, and the request goes through, rather than every request hanging with it.
REDIS_TIMEOUT_SECONDS = 0.5
# Once Redis has failed, requests go through without asking it for this long, so that a
# Redis that times out costs one request the wait, not every request.
REDIS_RETRY_SECONDS = 1.0


class RateLimited(BulkopsError):
    """Too many requests: try again later."""

    code = "RATE_LIMITED"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many requests; try again in {retry_after} s.")
        self.retry_after = retry_after


class RateLimiter:
    """At most `burst` requests of one tenant in any second, and `per_second` on average
    over any minute (moving windows, so a client cannot double its rate at a window's
    edge). A limit of 0 is off.

    When Redis fails or does not answer, requests go through: a limiter that is down must
    not take the API down with it. A warning is logged when that starts; Redis is asked
    again after `REDIS_RETRY_SECONDS`."""

    def __init__(self, redis_url: str, *, burst: int, per_second: float) -> None:
        # The burst window first: a request it refuses is not counted against the minute.
        self._limits: list[RateLimitItem] = []
        if burst > 0:
            self._limits.append(RateLimitItemPerSecond(burst, namespace="tenant"))
        if per_second > 0:
            per_minute = max(1, round(per_second * 60))
            self._limits.append(RateLimitItemPerMinute(per_minute, namespace="tenant"))
        self._pool: aioredis.ConnectionPool | None = None
        self._limiter: MovingWindowRateLimiter | None = None
        self._failing = False
        self._retry_at = 0.0
        if not self._limits:
            return
        self._pool = aioredis.ConnectionPool.from_url(
            redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        options: dict[str, Any] = {"connection_pool": self._pool}
        storage = RedisStorage(
            # With a pool given, the URI only picks redis-py's client; it connects nowhere.
            "async+redis://",
            implementation="redispy",
            key_prefix=RATE_LIMIT_PREFIX,
            wrap_exceptions=True,
            **options,
        )
        self._limiter = MovingWindowRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        assert settings.redis_url, "the rate limits are kept in Redis"
        return cls(
            settings.redis_url,
            burst=settings.rate_limit_burst,
            per_second=settings.rate_limit_per_second,
        )

    async def hit(self, tenant: str) -> None:
        """Count one request of `tenant`; raises `RateLimited` when it is over a limit."""
        if self._limiter is None or time.monotonic() < self._retry_at:
            return
        try:
            for item in self._limits:
                if not await self._limiter.hit(item, tenant):
                    stats = await self._limiter.get_window_stats(item, tenant)
                    raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))
        except StorageError as exc:
            if not self._failing:
                log.warning("rate limits are not enforced: Redis failed (%s)", exc.storage_error)
            self._failing = True
            self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS
            return
        if self._failing:
            log.info("rate limits are enforced again")
            self._failing = False

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


def too_many_requests(exc: RateLimited, *, graphql: bool) -> Response:
    """429 with the seconds to wait in `Retry-After`."""
    return error_response(
        429,
        exc.message,
        exc.code,
        headers={"Retry-After": str(exc.retry_after)},
        graphql=graphql,
    )


async def _over_limit(context: Context) -> bool:
    """Whether one more websocket operation puts the connection's tenant over its limit."""
    if context.tenant_id is None:
        return False
    limiter = _limiter_of(context.request)
    try:
        await limiter.hit(context.tenant_id)
    except RateLimited:
        return True
    return False


def _limiter_of(connection: HTTPConnection) -> RateLimiter:
    limiter = connection.scope["state"]["rate_limiter"]
    assert isinstance(limiter, RateLimiter)
    return limiter


class RateLimitedTransportWSHandler(SharedStreamsHandler):
    """graphql-transport-ws (with shared subscriptions) where a `connection_init` or a
    `subscribe` over the tenant's limit closes the socket with 4429."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            # The view's `on_ws_connect` authenticates, and counts the connection.
            await super().handle_connection_init(message)
        except RateLimited:
            await self.websocket.close(code=WS_TOO_MANY_REQUESTS, reason="Too many requests")
        except AuthUnavailable:
            await self.websocket.close(code=WS_TRY_AGAIN_LATER, reason="Sign-in unavailable")

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and await _over_limit(self.context):
            await self.websocket.close(code=WS_TOO_MANY_REQUESTS, reason="Too many requests")
            return
        await super().handle_subscribe(message)


class RateLimitedGraphQLWSHandler(LegacyWSHandler):
    """The legacy graphql-ws protocol, limited as `RateLimitedTransportWSHandler` is."""

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except RateLimited:
            await self.websocket.close(code=WS_TOO_MANY_REQUESTS, reason="Too many requests")
        except AuthUnavailable:
            await self.websocket.close(code=WS_TRY_AGAIN_LATER, reason="Sign-in unavailable")

    async def handle_start(self, message: StartMessage) -> None:
        if self.connection_acknowledged and await _over_limit(self.context):
            await self.websocket.close(code=WS_TOO_MANY_REQUESTS, reason="Too many requests")
            return
        await super().handle_start(message)
