"""Error responses of the HTTP routes, in the shape GraphQL clients already read:
`errors[0].extensions.code` (and `field` when one input is at fault)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

DOWNLOAD_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def error_response(
    status_code: int,
    message: str,
    code: str,
    *,
    field: list[str] | None = None,
    headers: dict[str, str] | None = None,
    graphql: bool = False,
) -> Response:
    """One error as JSON; `graphql` adds `"data": null`, as a GraphQL response has it."""
    extensions: dict[str, Any] = {"code": code}
    if field:
        extensions["field"] = field
    body: dict[str, Any] = {"data": None} if graphql else {}
    body["errors"] = [{"message": message, "extensions": extensions}]
    return JSONResponse(body, status_code=status_code, headers=headers)


def unauthenticated(*, graphql: bool = False) -> Response:
    """401 with the challenge a bearer-token client expects."""
    return error_response(
        401,
        "A valid bearer token is required.",
        "UNAUTHENTICATED",
        headers={"WWW-Authenticate": "Bearer"},
        graphql=graphql,
    )


def forbidden(scope: str, *, graphql: bool = False) -> Response:
    """403: the caller is known, but its token does not grant `scope`."""
    return error_response(403, f"This needs the {scope!s} scope.", "FORBIDDEN", graphql=graphql)


def attachment_headers(filename: str) -> dict[str, str]:
    """Headers of a download saved as `filename`, never cached or sniffed."""
    return {"Content-Disposition": f'attachment; filename="{filename}"', **DOWNLOAD_HEADERS}
