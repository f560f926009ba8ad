"""Who is calling: the bearer token of a request (an API token or a signed-in user's JWT)
resolved to its caller in one place, and counted against the tenant's rate limit there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from bulkops.domain import Scope
from bulkops.models import Caller
from bulkops.services.auth import bearer_token
from bulkops.services.jwt_auth import AuthUnavailable
from bulkops.web.responses import error_response, forbidden, unauthenticated
from bulkops.web.state import AppState

TenantHandler = Callable[[Request, str], Awaitable[Response]]
CALLER_KEY = "bulkops.caller"


async def request_caller(connection: HTTPConnection, header: str | None = None) -> Caller | None:
    """The caller of the request's bearer token (or of `header`, a websocket's
    `connection_init` value), also kept in the request's scope; None when there is no valid
    token.

    Raises `bulkops.web.rate_limit.RateLimited` when the tenant is over its rate limit (the
    app answers 429, a websocket handler closes with 4429), and
    `bulkops.services.jwt_auth.AuthUnavailable` when a JWT cannot be checked now (503)."""
    state: AppState = connection.scope["state"]
    if header is None:
        header = connection.headers.get("authorization")
    caller = await state["authenticator"].caller_for(bearer_token(header))
    if caller is not None:
        await state["rate_limiter"].hit(caller.tenant_id)
        connection.scope[CALLER_KEY] = caller
    return caller


def with_tenant(
    handler: TenantHandler, *, scope: Scope = Scope.READ
) -> Callable[[Request], Awaitable[Response]]:
    """A route that needs a bearer token with `scope`: 401 without a token, 403 without
    the scope, else `handler(request, tenant_id)`."""

    async def route(request: Request) -> Response:
        caller = await request_caller(request)
        if caller is None:
            return unauthenticated()
        if not caller.may(scope):
            return forbidden(scope)
        return await handler(request, caller.tenant_id)

    route.__name__ = handler.__name__
    route.__doc__ = handler.__doc__
    return route


def auth_unavailable(exc: AuthUnavailable, *, graphql: bool) -> Response:
    """503 with the seconds to wait in `Retry-After`: the caller's token may be fine."""
    return error_response(
        503,
        exc.message,
        exc.code,
        headers={"Retry-After": str(exc.retry_after)},
        graphql=graphql,
    )
