"""The Starlette application: what the lifespan opens, and the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from arq import create_pool as create_redis_pool
from arq.connections import RedisSettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from bulkops import metrics
from bulkops.config import Settings
from bulkops.db.pool import create_pool
from bulkops.graphql.schema import build_schema
from bulkops.operations import REGISTRY, Registry
from bulkops.outside import OutsideCalls
from bulkops.services.auth import Authenticator
from bulkops.services.container import Services
from bulkops.services.jwt_auth import AuthUnavailable, JWTVerifier
from bulkops.services.progress import Broker
from bulkops.storage import Storage
from bulkops.web.auth import auth_unavailable
from bulkops.web.cors import OriginPolicy
from bulkops.web.graphql_view import STATIC_DIR, BulkopsGraphQL, GraphQLEndpoint
from bulkops.web.rate_limit import RateLimited, RateLimiter, too_many_requests
from bulkops.web.request_id import RequestId
from bulkops.web.request_metrics import RequestMetrics
from bulkops.web.routes import (
    catalog_download,
    dashboard,
    export_files,
    health,
    images,
    job_errors,
    match_results,
)
from bulkops.web.routes import metrics as metrics_route
from bulkops.web.security_headers import SecurityHeaders
from bulkops.web.state import AppState


def create_app(settings: Settings, *, operations: Registry = REGISTRY) -> Starlette:
    """The ASGI app serving `operations`. Postgres and Redis are opened in the lifespan,
    from `settings`."""
    assert settings.database_url and settings.redis_url, "database and redis URLs are needed"
    origins = OriginPolicy(settings)
    view = BulkopsGraphQL(
        build_schema(
            dev=settings.dev,
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
            max_query_chars=settings.max_query_bytes,
            max_query_tokens=settings.max_query_tokens,
            max_query_fields=settings.max_query_fields,
            operations=operations,
        ),
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        connection_init_wait_timeout=timedelta(seconds=30),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        origins=origins,
        multipart_uploads_enabled=True,
    )
    endpoint = GraphQLEndpoint(view, settings)
    metrics.declare_operations(operations)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        assert settings.database_url and settings.redis_url
        pool = await create_pool(
            settings.database_url,
            role=settings.app_role,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
        )
        redis = await create_redis_pool(RedisSettings.from_dsn(settings.redis_url))
        broker = Broker(redis)
        await broker.start()
        rate_limiter = RateLimiter.from_settings(settings)
        jwt = JWTVerifier.from_settings(settings)
        outside = OutsideCalls(redis, settings)
        try:
            yield AppState(
                services=Services(
                    pool=pool,
                    redis=redis,
                    storage=Storage.from_settings(settings),
                    settings=settings,
                    outside=outside,
                    operations=operations,
                ),
                broker=broker,
                authenticator=Authenticator(pool, jwt),
                jwt=jwt,
                rate_limiter=rate_limiter,
            )
        finally:
            await outside.aclose()
            if jwt is not None:
                await jwt.close()
            await view.streams.close()
            await rate_limiter.close()
            await broker.stop()
            await redis.aclose()
            await pool.close()

    routes = [
        Route("/graphql", endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", endpoint),
        *health.routes(),
        *images.routes(),
        # Half the pool at most, so that downloads never starve /graphql of connections.
        *catalog_download.routes(limit=settings.pool_max_size // 2),
        *match_results.routes(),
        *export_files.routes(),
        *job_errors.routes(limit=settings.pool_max_size // 4),
        *dashboard.routes(),
        *metrics_route.routes(),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        # Request metrics outermost, so that they count every answer (CORS preflights too);
        # the request id next, so that every line logged while answering carries it; then
        # CORS, so that every answer (a 401, a 429) is readable by an allowed page.
        middleware=[
            Middleware(RequestMetrics, routes=routes),
            Middleware(RequestId),
            origins.middleware(),
            Middleware(SecurityHeaders),
        ],
        # Raised where every route learns its caller (`bulkops.web.auth.request_caller`).
        exception_handlers={RateLimited: _rate_limited, AuthUnavailable: _auth_unavailable},
    )


async def _rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)
    # Shaped as /graphql's other refusals (with `"data": null`) or as the downloads' ones.
    graphql = isinstance(request.scope.get("endpoint"), GraphQLEndpoint)
    return too_many_requests(exc, graphql=graphql)


async def _auth_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthUnavailable)
    graphql = isinstance(request.scope.get("endpoint"), GraphQLEndpoint)
    return auth_unavailable(exc, graphql=graphql)
