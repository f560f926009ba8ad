"""/graphql over HTTP and websockets: Strawberry's view, behind the bearer token and the
request-size checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError

from bulkops.config import Settings
from bulkops.graphql.context import Context
from bulkops.graphql.shared_streams import SharedStreams
from bulkops.graphql.ws_protocols import GuardedWebSocketAdapter
from bulkops.web.auth import request_tenant
from bulkops.web.rate_limit import RateLimitedGraphQLWSHandler, RateLimitedTransportWSHandler
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Closed by the app's lifespan.
        self.streams = SharedStreams()

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        state: AppState = request.scope["state"]
        return Context(
            request=request,
            response=response,
            state=state,
            tenant_id=request.scope.get("bulkops.tenant"),
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
        tenant = await request_tenant(context.request, header if isinstance(header, str) else "")
        if tenant is None:
            raise ConnectionRejectionError({"message": "A valid bearer token is required."})
        context.tenant_id = tenant

    async def render_graphql_ide(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "graphiql.html", media_type="text/html")


class GraphQLEndpoint:
    """Checks the bearer token and the request size before Strawberry sees an HTTP request."""

    def __init__(self, view: BulkopsGraphQL, settings: Settings) -> None:
        self.view = view
        self.settings = settings

    def _refuse_body(self, request: Request) -> Response | None:
        """Why the body is refused before it is read (too large, or a multipart upload
        without the preflight header that keeps cross-site forms out), or None."""
        length = request.headers.get("content-length")
        size = int(length) if length and length.isdigit() else None
        multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
        if not multipart:
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
        if scope["type"] == "http":
            request = Request(scope, receive)
            is_ide = request.method == "GET" and "query" not in request.query_params
            if not is_ide:
                refusal = self._refuse_body(request)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
                tenant = await request_tenant(request)
                if tenant is None:
                    await unauthenticated(graphql=True)(scope, receive, send)
                    return
                scope["bulkops.tenant"] = tenant
        await self.view(scope, receive, send)


def _request_error(status: int, code: str, message: str) -> Response:
    return error_response(status, message, code, graphql=True)
