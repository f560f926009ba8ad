"""A request id on every HTTP request and websocket connection: the caller's `X-Request-ID`
when it is a sane one (a proxy or a client tracing its own calls), else a new one. Every
log line of the request carries it, and the response echoes it."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bulkops import logs

HEADER = "X-Request-ID"
# What a tracing header looks like (UUIDs, hex, ULIDs, `service-123`); anything else is
# replaced rather than written into the logs as it came.
SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id(headers: Headers) -> str:
    """The incoming `X-Request-ID` if it is sane, else a new random one."""
    given = headers.get(HEADER, "")
    return given if SANE.fullmatch(given) else uuid.uuid4().hex


class RequestId:
    """ASGI middleware binding the request id to the request's log lines and setting it
    on the HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id(Headers(scope=scope))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        with logs.bound(request_id=rid):
            await self.app(scope, receive, send_with_id)
