"""Request counts and latency of the API, by route template (`/jobs/{job_id}/errors.csv`,
never the path itself, whose ids would make a series per job)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bulkops.metrics import HTTP_DURATION, HTTP_REQUESTS

# Any path no route serves: one series for all of them, whatever a client asks for.
UNMATCHED = "unmatched"


class RequestMetrics:
    """ASGI middleware counting every HTTP request by route template and status, and
    timing it until its response's last bytes are sent."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.template(scope)
        started = time.perf_counter()
        # A request that raises before answering is answered 500 by Starlette.
        status = 500
        counted = False

        def count() -> None:
            nonlocal counted
            counted = True
            HTTP_REQUESTS.labels(route, str(status)).inc()
            HTTP_DURATION.labels(route).observe(time.perf_counter() - started)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Before the last bytes go: whoever reads the response sees it counted.
                count()
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if not counted:
                count()

    def template(self, scope: Scope) -> str:
        """The path template of the route serving `scope`; a route matching the path but
        not the method (405, a CORS preflight) names it too."""
        partial: str | None = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return _path_format(route)
            if match is Match.PARTIAL and partial is None:
                partial = _path_format(route)
        return partial or UNMATCHED


def _path_format(route: BaseRoute) -> str:
    return str(getattr(route, "path_format", UNMATCHED))
