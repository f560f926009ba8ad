"""What the app's lifespan opens once and every request shares."""

from __future__ import annotations

from bulkops.graphql.context import GraphQLState
from bulkops.services.auth import Authenticator
from bulkops.services.jwt_auth import JWTVerifier
from bulkops.web.rate_limit import RateLimiter


class AppState(GraphQLState):
    """The resolvers' state, and what only the HTTP side uses."""

    authenticator: Authenticator
    jwt: JWTVerifier | None
    rate_limiter: RateLimiter
