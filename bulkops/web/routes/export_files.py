"""GET /exports/{tenant}/{file}: an export file, through the signed link exportProducts
gives (no bearer token: the signature is the permission, until the link expires), streamed
from storage; one byte range (`Range: bytes=…`) is answered with 206."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bulkops.db.export import ExportFormat
from bulkops.services import export_files
from bulkops.services.catalog_download import export_filename
from bulkops.services.signing import signing_key
from bulkops.web.ranges import Unsatisfiable, byte_range
from bulkops.web.responses import attachment_headers, error_response
from bulkops.web.routes.ids import parse_uuid
from bulkops.web.state import AppState


def _not_found() -> Response:
    return error_response(404, "No such export file (it may have been removed).", "NOT_FOUND")


async def download(request: Request) -> Response:
    state: AppState = request.scope["state"]
    tenant_id = parse_uuid(request.path_params["tenant"])
    file_id, _, fmt = str(request.path_params["name"]).rpartition(".")
    file_id = parse_uuid(file_id) or ""
    if tenant_id is None or not file_id or fmt not in export_files.MEDIA_TYPES:
        return _not_found()
    verdict = export_files.check_link(
        signing_key(state["services"].settings),
        path=export_files.download_path(tenant_id, file_id, fmt),
        tenant_id=tenant_id,
        expires=request.query_params.get("expires", ""),
        given=request.query_params.get("signature", ""),
    )
    if verdict == "forbidden":
        return error_response(
            403, "The link's signature is not valid: ask the job for its link again.", "FORBIDDEN"
        )
    if verdict == "expired":
        return error_response(410, "The link has expired.", "LINK_EXPIRED")
    services = state["services"]
    file = await export_files.file_row(services, tenant_id, file_id)
    if file is None or file.format != fmt:
        return _not_found()
    storage = services.storage
    parts = await storage.parts(file.storage_key, file.bytes)
    if parts is None:
        return _not_found()
    size = file.bytes
    headers = {
        **attachment_headers(export_filename(cast(ExportFormat, fmt), file.created_at)),
        "Cache-Control": "private, no-store",
        "Accept-Ranges": "bytes",
    }
    try:
        wanted = byte_range(request.headers.get("range"), size)
    except Unsatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = wanted if wanted is not None else (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    media_type = export_files.MEDIA_TYPES[fmt]
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        storage.stream_parts(parts, start=start, end=end),
        status_code=status,
        headers=headers,
        media_type=media_type,
    )


def routes() -> list[Route]:
    return [Route("/exports/{tenant}/{name}", download, methods=["GET", "HEAD"])]
