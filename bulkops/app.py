"""The Starlette application: /graphql (HTTP, websocket, GraphiQL), health and files."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict

import asyncpg
from arq import create_pool as create_redis_pool
from arq.connections import ArqRedis, RedisSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from bulkops.config import Settings
from bulkops.db.pool import create_pool
from bulkops.error_routes import ErrorDownloads
from bulkops.export_file_routes import routes as export_file_routes
from bulkops.export_routes import Exports
from bulkops.match_routes import routes as match_result_routes
from bulkops.schema import build_schema
from bulkops.schema.context import Context
from bulkops.services.auth import Authenticator, bearer_token
from bulkops.services.progress import Broker
from bulkops.services.storage import LocalStorage
from bulkops.shared_streams import SharedStreams, SharedStreamsHandler

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


class AppState(TypedDict):
    settings: Settings
    pool: asyncpg.Pool
    redis: ArqRedis
    broker: Broker
    streams: SharedStreams
    authenticator: Authenticator
    storage: LocalStorage


def _unauthenticated() -> Response:
    return JSONResponse(
        {
            "data": None,
            "errors": [
                {
                    "message": "A valid bearer token is required.",
                    "extensions": {"code": "UNAUTHENTICATED"},
                }
            ],
        },
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


class BulkopsGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with the tenant resolved from the bearer token, and
    identical websocket subscriptions sharing one execution (`bulkops.shared_streams`)."""

    graphql_transport_ws_handler_class = SharedStreamsHandler

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        state: AppState = request.scope["state"]
        return Context(
            request=request,
            response=response,
            state=state,
            tenant_id=request.scope.get("bulkops.tenant"),
        )

    async def on_ws_connect(self, context: Context) -> None:
        params = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        tenant = await context.state["authenticator"].tenant_for(
            bearer_token(header) if isinstance(header, str) else None
        )
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
                state: AppState = scope["state"]
                tenant = await state["authenticator"].tenant_for(
                    bearer_token(request.headers.get("authorization"))
                )
                if tenant is None:
                    await _unauthenticated()(scope, receive, send)
                    return
                scope["bulkops.tenant"] = tenant
        await self.view(scope, receive, send)


def _request_error(status: int, code: str, message: str) -> Response:
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    state: AppState = request.scope["state"]
    try:
        async with state["pool"].acquire() as conn:
            await conn.fetchval("SELECT 1")
        await state["redis"].ping()
    except Exception as exc:
        return JSONResponse({"ready": False, "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"ready": True})


async def stored_file(request: Request) -> Response:
    """A stored file (a product image), for the tenant that owns it."""
    state: AppState = request.scope["state"]
    tenant = await state["authenticator"].tenant_for(
        bearer_token(request.headers.get("authorization"))
    )
    if tenant is None:
        return _unauthenticated()
    key: str = request.path_params["key"]
    if not key.startswith(f"{tenant}/"):
        return PlainTextResponse("Not found.", status_code=404)
    try:
        path = state["storage"].path(key)
    except ValueError:
        return PlainTextResponse("Not found.", status_code=404)
    if not path.is_file():
        return PlainTextResponse("Not found.", status_code=404)
    return FileResponse(path)


def create_app(settings: Settings) -> Starlette:
    """The ASGI app. Postgres and Redis are opened in the lifespan, from `settings`."""
    assert settings.database_url and settings.redis_url, "database and redis URLs are needed"
    view = BulkopsGraphQL(
        build_schema(
            dev=settings.dev,
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
        ),
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        connection_init_wait_timeout=timedelta(seconds=30),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        allowed_origins=settings.allowed_origins,
        multipart_uploads_enabled=True,
    )
    endpoint = GraphQLEndpoint(view, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        assert settings.database_url and settings.redis_url
        pool = await create_pool(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
        )
        redis = await create_redis_pool(RedisSettings.from_dsn(settings.redis_url))
        broker = Broker(redis)
        await broker.start()
        streams = SharedStreams()
        try:
            yield AppState(
                settings=settings,
                pool=pool,
                redis=redis,
                broker=broker,
                streams=streams,
                authenticator=Authenticator(pool),
                storage=LocalStorage(settings.resolved_storage_dir),
            )
        finally:
            await streams.close()
            await broker.stop()
            await redis.aclose()
            await pool.close()

    routes = [
        Route("/graphql", endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/files/{key:path}", stored_file),
        # Half the pool at most, so that downloads never starve /graphql of connections.
        *Exports(limit=settings.pool_max_size // 2).routes(),
        *match_result_routes(),
        *export_file_routes(),
        *ErrorDownloads(limit=settings.pool_max_size // 4).routes(),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
