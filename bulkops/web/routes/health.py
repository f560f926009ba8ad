"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bulkops.db.pool import ping
from bulkops.web.state import AppState

# A server that hangs rather than refuses still gets a prompt 503, inside the probe's own
# timeout (compose's is 4 s).
READY_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _check(call: Awaitable[object]) -> str:
    """ "ok", or the name of the error the server answered with (or did not answer in time)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await call
    except Exception as exc:
        return type(exc).__name__
    return "ok"


async def readyz(request: Request) -> Response:
    state: AppState = request.scope["state"]
    services = state["services"]
    postgres, redis = await asyncio.gather(
        _check(ping(services.pool)), _check(services.redis.ping())
    )
    if postgres == redis == "ok":
        return JSONResponse({"ready": True})
    failed = postgres if postgres != "ok" else redis
    return JSONResponse(
        {"ready": False, "error": failed, "postgres": postgres, "redis": redis}, status_code=503
    )


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]
