"""/graphql over HTTP and websockets: Strawberry's view, behind the bearer token and the
request-size checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cross_web import HTTPException as StrawberryHTTPException
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema.exceptions import InvalidOperationTypeError

from bulkops.config import Settings
from bulkops.graphql.context import Context
from bulkops.graphql.shared_streams import SharedStreams
from bulkops.graphql.ws_protocols import GuardedWebSocketAdapter
from bulkops.services.jwt_auth import AuthUnavailable
from bulkops.web.auth import CALLER_KEY, auth_unavailable, request_caller
from bulkops.web.cors import OriginPolicy
from bulkops.web.rate_limit import RateLimitedGraphQLWSHandler, RateLimitedTransportWSHandler
from bulkops.web.request_body import (
    BadRequest,
    check_json_body,
    check_multipart,
    check_query_params,
    read_body,
    replay,
)
from bulkops.web.responses import error_response, unauthenticated
from bulkops.web.state import AppState

STATIC_DIR = Path(__file__).parent.parent / "static"


class BulkopsGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with the tenant resolved from the bearer token, and
    identical websocket subscriptions sharing one execution (`bulkops.graphql.shared_streams`).
    Websocket messages are checked against their protocol before dispatch
    (`bulkops.graphql.ws_protocols`)."""

    graphql_transport_ws_handler_class = RateLimitedTransportWSHandler
    graphql_ws_handler_class = RateLimitedGraphQLWSHandler
    websocket_adapter_class = GuardedWebSocketAdapter

    def __init__(self, *args: Any, origins: OriginPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origins = origins
        # Closed by the app's lifespan.
        self.streams = SharedStreams()

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        # The same origins as HTTP's CORS, the dev pattern included.
        return self.origins.allows(origin)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        state: AppState = request.scope["state"]
        return Context(
            request=request,
            response=response,
            state=state,
            caller=request.scope.get(CALLER_KEY),
        )

    def decode_json(self, data: str | bytes) -> object:
        # Strawberry turns only JSONDecodeError into a client error (HTTP 400, or the
        # websocket protocol's answer); nesting past the decoder's recursion limit and bytes
        # that are not UTF-8 are malformed JSON as well.
        try:
            return json.loads(data)
        except (RecursionError, UnicodeDecodeError) as exc:
            text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
            raise json.JSONDecodeError(f"Malformed JSON: {type(exc).__name__}", text, 0) from exc

    async def on_ws_connect(self, context: Context) -> None:
        params = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        # RateLimited and AuthUnavailable are answered by the protocol handlers.
        caller = await request_caller(context.request, header if isinstance(header, str) else "")
        if caller is None:
            raise ConnectionRejectionError({"message": "A valid bearer token is required."})
        context.caller = caller

    async def render_graphql_ide(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "graphiql.html", media_type="text/html")


class GraphQLEndpoint:
    """Checks the bearer token and the request (its size, its shape, the strings its
    variables hold: `bulkops.web.request_body`) before Strawberry sees an HTTP request, and
    answers Strawberry's own refusals as GraphQL errors."""

    def __init__(self, view: BulkopsGraphQL, settings: Settings) -> None:
        self.view = view
        self.settings = settings

    def _refuse_body(self, request: Request) -> Response | None:
        """Why the body is refused before it is read (too large, or a multipart upload
        without the preflight header that keeps cross-site forms out), or None."""
        length = request.headers.get("content-length")
        size = int(length) if length and length.isdigit() else None
        if _media_type(request) != "multipart/form-data":
            if size is not None and size > self.settings.max_request_bytes:
                return _request_error(413, "REQUEST_TOO_LARGE", "The request is too large.")
            return None
        if request.headers.get("apollo-require-preflight", "").lower() != "true":
            return _request_error(
                400,
                "CSRF_PREFLIGHT_REQUIRED",
                "Uploads need the header Apollo-Require-Preflight: true.",
            )
        if size is None:
            return _request_error(411, "LENGTH_REQUIRED", "Uploads need a Content-Length.")
        if size > self.settings.max_upload_bytes:
            return _request_error(
                413,
                "UPLOAD_TOO_LARGE",
                f"Uploads may be at most {self.settings.max_upload_bytes} bytes.",
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.view(scope, receive, send)
            return
        try:
            response = await self._respond(Request(scope, receive))
        except BadRequest as error:
            response = _request_error(error.status, error.code, error.message, field=error.field)
        except ClientDisconnect:
            return
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        if request.method not in ("GET", "POST"):
            return _request_error(
                405,
                "METHOD_NOT_ALLOWED",
                "GraphQL takes GET (queries) and POST.",
                headers={"Allow": "GET, POST"},
            )
        if request.method == "GET" and "query" not in request.query_params:
            return await self._run(request)  # GraphiQL
        refusal = self._refuse_body(request)
        if refusal is not None:
            return refusal
        try:
            caller = await request_caller(request)
        except AuthUnavailable as exc:
            return auth_unavailable(exc, graphql=True)
        if caller is None:
            return unauthenticated(graphql=True)
        max_query_bytes = self.settings.max_query_bytes
        if request.method == "GET":
            check_query_params(request.query_params, max_query_bytes=max_query_bytes)
            return await self._run(request)
        media_type = _media_type(request)
        if media_type == "multipart/form-data":
            return await self._run_upload(request)
        # Strawberry's own test for JSON.
        if "application/json" not in media_type:
            return _request_error(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "Send the request as application/json (or an upload as multipart/form-data).",
            )
        body = await read_body(request.receive, limit=self.settings.max_request_bytes)
        if body is None:
            raise ClientDisconnect
        check_json_body(body, max_query_bytes=max_query_bytes)
        return await self._run(Request(request.scope, replay(body, request.receive)))

    async def _run_upload(self, request: Request) -> Response:
        # The file parts are spooled to disk as they arrive; Strawberry reads the same form.
        try:
            form = await request.form()
        except (HTTPException, MultiPartException) as error:
            message = error.detail if isinstance(error, HTTPException) else error.message
            raise BadRequest(f"The upload cannot be read: {message}") from None
        try:
            check_multipart(form, max_query_bytes=self.settings.max_query_bytes)
            return await self._run(request)
        finally:
            await form.close()

    async def _run(self, request: Request) -> Response:
        try:
            response: Response = await self.view.run(request)
        except StrawberryHTTPException as error:
            if isinstance(error.__cause__, InvalidOperationTypeError):
                return _request_error(
                    405,
                    "METHOD_NOT_ALLOWED",
                    "Mutations are sent with POST.",
                    headers={"Allow": "POST"},
                )
            return _request_error(error.status_code, "BAD_REQUEST", error.reason)
        return response


def _media_type(request: Request) -> str:
    # Read as Strawberry reads it, so that what it takes for an upload or JSON is checked.
    media_type, _ = parse_content_type(request.headers.get("content-type", ""))
    return media_type


def _request_error(
    status: int,
    code: str,
    message: str,
    *,
    field: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return error_response(status, message, code, field=field, headers=headers, graphql=True)
