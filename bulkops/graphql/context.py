"""The per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from bulkops.errors import AuthenticationError
from bulkops.models import Caller
from bulkops.services.container import Services
from bulkops.services.progress import Broker

if TYPE_CHECKING:
    from bulkops.graphql.loaders import Loaders


class GraphQLState(TypedDict):
    """What resolvers use of the app's state, opened once by the app's lifespan."""

    services: Services
    broker: Broker


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    state: GraphQLState
    caller: Caller | None = None
    connection_params: dict[str, Any] | None = None
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def services(self) -> Services:
        return self.state["services"]

    @property
    def tenant_id(self) -> str | None:
        return self.caller.tenant_id if self.caller is not None else None

    @property
    def tenant(self) -> str:
        """The caller's tenant; raises when the request is not authenticated."""
        if self.caller is None:
            raise AuthenticationError
        return self.caller.tenant_id

    @property
    def subject(self) -> str | None:
        """Who acts: a token's name or a signed-in user's subject."""
        return self.caller.subject if self.caller is not None else None

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            from bulkops.graphql.loaders import Loaders

            self._loaders = Loaders(self.state["services"].pool, self.tenant)
        return self._loaders
