"""GET /files/{key}: a stored file (a product image) of the caller's tenant."""

from __future__ import annotations

import mimetypes

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bulkops.storage import StorageKeyError
from bulkops.web.auth import with_tenant
from bulkops.web.state import AppState


@with_tenant
async def stored_file(request: Request, tenant: str) -> Response:
    """A stored file (a product image), for the tenant that owns it, read from storage."""
    state: AppState = request.scope["state"]
    key: str = request.path_params["key"]
    if not key.startswith(f"{tenant}/"):
        return PlainTextResponse("Not found.", status_code=404)
    try:
        data = await state["services"].storage.read(key)
    except StorageKeyError:
        return PlainTextResponse("Not found.", status_code=404)
    if data is None:
        return PlainTextResponse("Not found.", status_code=404)
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return Response(data, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})


def routes() -> list[Route]:
    return [Route("/files/{key:path}", stored_file)]
