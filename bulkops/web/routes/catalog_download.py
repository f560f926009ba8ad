"""GET /export/products.csv and /export/products.jsonl: the tenant's catalog as a download."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulkops.db.export import ExportFormat
from bulkops.errors import InputError
from bulkops.services.catalog_download import (
    catalog_stream,
    check_filter,
    export_filename,
    parse_filter,
)
from bulkops.web.auth import with_tenant
from bulkops.web.downloads import CopyResponse, DownloadSlots
from bulkops.web.responses import attachment_headers, error_response
from bulkops.web.state import AppState

MEDIA_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
}


def routes(*, limit: int) -> list[Route]:
    """The download routes; at most `limit` downloads stream at once (more get 429)."""
    slots = DownloadSlots(limit=limit, code="TOO_MANY_EXPORTS", noun="exports")

    async def download(request: Request, tenant: str, fmt: ExportFormat) -> Response:
        state: AppState = request.scope["state"]
        try:
            flt = parse_filter(request.query_params.multi_items())
            await check_filter(state["services"].pool, tenant, flt)
        except InputError as exc:
            status = 404 if exc.code == "NOT_FOUND" else 400
            return error_response(status, exc.message, exc.code, field=exc.field)
        headers = attachment_headers(export_filename(fmt))
        if request.method == "HEAD":
            return Response(media_type=MEDIA_TYPES[fmt], headers=headers)
        refusal = slots.refusal()
        if refusal is not None:
            return refusal
        slots.take()
        stream = catalog_stream(state["services"].pool, tenant, flt, fmt, on_close=slots.release)
        return CopyResponse(stream, media_type=MEDIA_TYPES[fmt], headers=headers)

    @with_tenant
    async def csv(request: Request, tenant: str) -> Response:
        return await download(request, tenant, "csv")

    @with_tenant
    async def jsonl(request: Request, tenant: str) -> Response:
        return await download(request, tenant, "jsonl")

    return [
        Route("/export/products.csv", csv, methods=["GET"]),
        Route("/export/products.jsonl", jsonl, methods=["GET"]),
    ]
