"""GET /export/products.csv and /export/products.jsonl: the tenant's catalog as a download."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bulkops.db.export import ExportFormat
from bulkops.errors import InputError
from bulkops.services.auth import bearer_token
from bulkops.services.export import ExportStream, check_filter, export_filename, parse_filter

if TYPE_CHECKING:
    from bulkops.app import AppState

MEDIA_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
}


def error_response(
    status_code: int,
    message: str,
    code: str,
    *,
    field: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error in the shape GraphQL clients already read: `errors[0].extensions.code`."""
    extensions: dict[str, Any] = {"code": code}
    if field:
        extensions["field"] = field
    return JSONResponse(
        {"errors": [{"message": message, "extensions": extensions}]},
        status_code=status_code,
        headers=headers,
    )


class ExportResponse(StreamingResponse):
    """Streams an ExportStream and always closes it, however the response ends."""

    def __init__(self, stream: ExportStream, *, media_type: str, headers: dict[str, str]) -> None:
        self.stream = stream
        self.chunks = stream.chunks()
        super().__init__(self.chunks, media_type=media_type, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:
            # ASGI 2.4 servers report a client gone mid-stream this way: nothing to answer.
            pass
        finally:
            # Shielded: a disconnect cancels the response's scope, and the COPY must still
            # be stopped and its connection returned before this request is over.
            with anyio.CancelScope(shield=True):
                await self.chunks.aclose()
                await self.stream.aclose()


class Exports:
    """The export routes of one app, and how many exports it streams at once.

    Each running export holds a pool connection for as long as its client downloads, so at
    most `limit` run at once; more get 429 and the rest of the API keeps its connections."""

    def __init__(self, *, limit: int) -> None:
        self.limit = max(1, limit)
        self.running = 0

    def routes(self) -> list[Route]:
        return [
            Route("/export/products.csv", self.csv, methods=["GET"]),
            Route("/export/products.jsonl", self.jsonl, methods=["GET"]),
        ]

    async def csv(self, request: Request) -> Response:
        return await self.export(request, "csv")

    async def jsonl(self, request: Request) -> Response:
        return await self.export(request, "jsonl")

    async def export(self, request: Request, fmt: ExportFormat) -> Response:
        state: AppState = request.scope["state"]
        tenant = await state["authenticator"].tenant_for(
            bearer_token(request.headers.get("authorization"))
        )
        if tenant is None:
            return error_response(
                401,
                "A valid bearer token is required.",
                "UNAUTHENTICATED",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            flt = parse_filter(request.query_params.multi_items())
            await check_filter(state["pool"], tenant, flt)
        except InputError as exc:
            status = 404 if exc.code == "NOT_FOUND" else 400
            return error_response(status, exc.message, exc.code, field=exc.field)
        headers = {
            "Content-Disposition": f'attachment; filename="{export_filename(fmt)}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
        if request.method == "HEAD":
            return Response(media_type=MEDIA_TYPES[fmt], headers=headers)
        if self.running >= self.limit:
            return error_response(
                429,
                f"{self.limit} exports are already running; try again shortly.",
                "TOO_MANY_EXPORTS",
                headers={"Retry-After": "5"},
            )
        self.running += 1
        stream = ExportStream(state["pool"], tenant, flt, fmt, on_close=self._finished)
        return ExportResponse(stream, media_type=MEDIA_TYPES[fmt], headers=headers)

    def _finished(self) -> None:
        self.running -= 1
