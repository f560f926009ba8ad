"""An outside service for the tests: a real HTTP server on a loopback port that answers
what the test tells it to and remembers every request it got."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.serving import QuickServer

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # When it arrived (monotonic seconds), and whether the server's own limit refused it.
    at: float
    refused: bool


async def ok_json(request: Request) -> Response:
    return JSONResponse({"ok": True, "path": request.url.path})


class ProviderServer:
    """Every request goes to `handler` (answering `{"ok": true}` until a test sets it);
    `seen` lists the requests; `in_flight` / `most_in_flight` count those being
    answered at once. With `limit_per_second` set, the server keeps a rate limit of its
    own, as a provider does: a request past that many in the last second is answered 429
    with `Retry-After: 1`."""

    def __init__(self) -> None:
        self.handler: Handler = ok_json
        self.limit_per_second: int | None = None
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._server: QuickServer | None = None
        self._task: asyncio.Task[None] | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])

    def url(self, path: str = "/", *, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def answer(self, *responses: Response | Handler) -> None:
        """Answer with these in turn, the last one from then on."""
        queue = list(responses)

        async def scripted(request: Request) -> Response:
            item = queue.pop(0) if len(queue) > 1 else queue[0]
            return item if isinstance(item, Response) else await item(request)

        self.handler = scripted

    def busiest_second(self) -> int:
        """The most requests answered (not refused) within any one second."""
        times = [s.at for s in self.seen if not s.refused]
        return max(
            (sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0
        )

    async def _any(self, request: Request) -> Response:
        now = time.monotonic()
        refused = self.limit_per_second is not None and self.limit_per_second <= sum(
            1 for s in self.seen if not s.refused and s.at > now - 1.0
        )
        body = await request.body()
        self.seen.append(
            Seen(request.method, request.url.path, dict(request.headers), body, now, refused)
        )
        if refused:
            return JSONResponse(
                {"error": {"message": "Rate limit reached"}}, 429, {"retry-after": "1"}
            )
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self.handler(request)
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        methods = ["GET", "POST", "PUT", "DELETE"]
        app = Starlette(routes=[Route("/{path:path}", self._any, methods=methods)])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = QuickServer(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.stop()
        self._server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, timeout=5)
        self._server = None


@contextlib.asynccontextmanager
async def provider_server() -> AsyncIterator[ProviderServer]:
    server = ProviderServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
