"""The per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from bulkops.errors import AuthenticationError

if TYPE_CHECKING:
    from bulkops.app import AppState
    from bulkops.resolvers.loaders import Loaders


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    state: AppState
    tenant_id: str | None = None
    connection_params: dict[str, Any] | None = None
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def tenant(self) -> str:
        """The caller's tenant; raises when the request is not authenticated."""
        if self.tenant_id is None:
            raise AuthenticationError
        return self.tenant_id

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            from bulkops.resolvers.loaders import Loaders

            self._loaders = Loaders(self.state["pool"], self.tenant)
        return self._loaders
