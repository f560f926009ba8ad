"""GET /exports/{tenant}/{file}: an export file, through the signed link exportProducts
gives (no bearer token: the signature is the permission, until the link expires)."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from bulkops.db.export import ExportFormat
from bulkops.services import export_files
from bulkops.services.catalog_download import export_filename
from bulkops.services.signing import signing_key
from bulkops.web.responses import error_response
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
    path = state["services"].storage.path(file.storage_key)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return _not_found()
    return FileResponse(
        path,
        media_type=export_files.MEDIA_TYPES[fmt],
        filename=export_filename(cast(ExportFormat, fmt), file.created_at),
        stat_result=stat,
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


def routes() -> list[Route]:
    return [Route("/exports/{tenant}/{name}", download, methods=["GET", "HEAD"])]
