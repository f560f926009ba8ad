"""GET /files/{key}: a stored file (a product image) of the caller's tenant."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from bulkops.web.auth import with_tenant
from bulkops.web.state import AppState


@with_tenant
async def stored_file(request: Request, tenant: str) -> Response:
    """A stored file (a product image), for the tenant that owns it."""
    state: AppState = request.scope["state"]
    key: str = request.path_params["key"]
    if not key.startswith(f"{tenant}/"):
        return PlainTextResponse("Not found.", status_code=404)
    try:
        path = state["services"].storage.path(key)
    except ValueError:
        return PlainTextResponse("Not found.", status_code=404)
    if not path.is_file():
        return PlainTextResponse("Not found.", status_code=404)
    return FileResponse(path)


def routes() -> list[Route]:
    return [Route("/files/{key:path}", stored_file)]
