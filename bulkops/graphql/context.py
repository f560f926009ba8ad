"""The per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from bulkops.errors import AuthenticationError
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
    tenant_id: str | None = None
    connection_params: dict[str, Any] | None = None
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def services(self) -> Services:
        return self.state["services"]

    @property
    def tenant(self) -> str:
        """The caller's tenant; raises when the request is not authenticated."""
        if self.tenant_id is None:
            raise AuthenticationError
        return self.tenant_id

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            from bulkops.graphql.loaders import Loaders

            self._loaders = Loaders(self.state["services"].pool, self.tenant)
        return self._loaders
