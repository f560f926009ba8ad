"""Liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bulkops.db.pool import ping
from bulkops.web.state import AppState


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    state: AppState = request.scope["state"]
    try:
        await ping(state["services"].pool)
        await state["services"].redis.ping()
    except Exception as exc:
        return JSONResponse({"ready": False, "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"ready": True})


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz)]
