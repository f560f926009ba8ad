"""Who is calling: the bearer token of a request, resolved to its tenant in one place, and
counted against the tenant's rate limit there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from bulkops.services.auth import bearer_token
from bulkops.web.responses import unauthenticated
from bulkops.web.state import AppState

TenantHandler = Callable[[Request, str], Awaitable[Response]]


async def request_tenant(connection: HTTPConnection, header: str | None = None) -> str | None:
    """The tenant of the request's bearer token (or of `header`, a websocket's
    `connection_init` value); None when there is no valid token.

    Raises `bulkops.web.rate_limit.RateLimited` when the tenant is over its rate limit;
    the app answers that with 429 (a websocket handler closes with 4429)."""
    state: AppState = connection.scope["state"]
    if header is None:
        header = connection.headers.get("authorization")
    tenant: str | None = await state["authenticator"].tenant_for(bearer_token(header))
    if tenant is not None:
        await state["rate_limiter"].hit(tenant)
    return tenant


def with_tenant(handler: TenantHandler) -> Callable[[Request], Awaitable[Response]]:
    """A route that needs a bearer token: 401 without one, else `handler(request, tenant)`."""

    async def route(request: Request) -> Response:
        tenant = await request_tenant(request)
        if tenant is None:
            return unauthenticated()
        return await handler(request, tenant)

    route.__name__ = handler.__name__
    route.__doc__ = handler.__doc__
    return route
