"""What a websocket client may send to /graphql, and how bad input is answered.

Strawberry's protocol handlers index into every message as if it had the protocol's shape,
so a frame of another shape (`5`, `[]`, a string as payload, an object as id) raised inside
the handler and dropped the connection with no close code. Here each message's shape is
checked once, before it is dispatched:

- graphql-transport-ws: a malformed message closes the socket with 4400, as the protocol
  says; the rest keeps Strawberry's answers (4401, 4403, 4409, 4429, `error`).
- graphql-ws (the legacy protocol): a message that cannot be read gets `connection_error`
  and the connection reads on, as that protocol specifies; a `start` whose payload is not
  a request gets an `error` for its id; a refused token closes with 4403 (the protocol's
  reference server closes with 1011; the API promises 4403 on both protocols).

Every close goes through `GuardedWebSocketAdapter`, which cuts the reason to what a close
frame holds: a longer one made the close itself fail, leaving the client no close code."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import suppress
from typing import Any, cast

from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage,
    OperationMessage,
)
from strawberry.types.unset import UnsetType

from bulkops.graphql.context import Context
from bulkops.graphql.open_subscriptions import counted

# RFC 6455: a close frame's payload is at most 125 bytes, two of them the code.
MAX_CLOSE_REASON_BYTES = 123
INVALID_MESSAGE = "Invalid message received"
FORBIDDEN = 4403


def fit_close_reason(reason: str) -> str:
    """`reason` cut to fit a close frame, on a character boundary, marked with an ellipsis
    when cut. Characters UTF-8 cannot encode (lone surrogates from a client's JSON) become
    `?`: the frame could not carry them."""
    encoded = reason.encode("utf-8", errors="replace")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return encoded.decode("utf-8")
    cut = encoded[: MAX_CLOSE_REASON_BYTES - len("…".encode())]
    return cut.decode("utf-8", errors="ignore") + "…"


class GuardedWebSocketAdapter(ASGIWebSocketAdapter):
    """Starlette's websocket as Strawberry's handlers use it, with closes that cannot fail
    and sends after the close that stop the sender the way a client's leaving does."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        # Starlette refuses a send after the close with a RuntimeError; the handlers know
        # how to stop on WebSocketDisconnected.
        if self.ws.application_state is WebSocketState.DISCONNECTED:
            raise WebSocketDisconnected
        await super().send_json(message)

    async def close(self, code: int, reason: str) -> None:
        # An operation and the reader may both close the socket; the first close counts.
        if self.ws.application_state is WebSocketState.DISCONNECTED:
            return
        with suppress(WebSocketDisconnect):  # the client left first
            await self.ws.close(code=code, reason=fit_close_reason(reason))


def _is_id(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _optional(value: object, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _request(payload: object) -> dict[str, Any] | None:
    """The GraphQL request a subscribe (or legacy start) payload carries, with nullish
    fields dropped; None when it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return None
    variables = payload.get("variables")
    name = payload.get("operationName")
    extensions = payload.get("extensions")
    if not (_optional(variables, dict) and _optional(name, str) and _optional(extensions, dict)):
        return None
    request: dict[str, Any] = {"query": payload["query"]}
    if variables is not None:
        request["variables"] = variables
    if name is not None:
        request["operationName"] = name
    return request


def _transport_message(message: object) -> Message | None:
    """`message` in the shape Strawberry's handler expects, or None when it breaks
    graphql-transport-ws's rules for its type. A type the protocol does not know passes:
    the handler closes with 4400 naming it."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    kind: str = message["type"]
    if kind in ("connection_init", "ping", "pong"):
        payload = message.get("payload")
        if not _optional(payload, dict):
            return None
        return cast(
            Message, {"type": kind} if payload is None else {"type": kind, "payload": payload}
        )
    if kind == "complete":
        if not _is_id(message.get("id")):
            return None
        return cast(Message, {"type": kind, "id": message["id"]})
    if kind == "subscribe":
        request = _request(message.get("payload"))
        if request is None or not _is_id(message.get("id")):
            return None
        return cast(Message, {"type": kind, "id": message["id"], "payload": request})
    return cast(Message, message)


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with every message's shape checked before dispatch."""

    async def handle_message(self, message: Message) -> None:
        checked = _transport_message(message)
        if checked is None:
            await self.handle_invalid_message(INVALID_MESSAGE)
            return
        await super().handle_message(checked)

    async def handle_task_exception(self, error: Exception) -> None:
        if isinstance(error, WebSocketDisconnected):
            return  # the client left while an operation was answering: nobody to tell
        await super().handle_task_exception(error)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """graphql-ws (subscriptions-transport-ws) with every message's shape checked before
    dispatch, and a refused token closing with 4403."""

    async def handle(self) -> None:
        # Strawberry's, reading through `_read_messages` so that unreadable frames are
        # answered rather than dropped.
        try:
            await self._read_messages()
        except WebSocketDisconnected:
            pass
        finally:
            if self.keep_alive_task:
                self.keep_alive_task.cancel()
                with suppress(BaseException):
                    await self.keep_alive_task
            await self.cleanup()

    async def _read_messages(self) -> None:
        while True:
            try:
                async for message in self.websocket.iter_json():
                    await self.handle_message(cast(OperationMessage, message))
                return
            except (NonJsonMessageReceived, NonTextMessageReceived):
                # The protocol answers a frame it cannot parse and reads on (Strawberry
                # drops text silently and closes on binary).
                await self._connection_error("A message must be JSON text.")

    async def handle_message(self, message: OperationMessage) -> None:
        raw: object = message
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            await self._connection_error("A message must be an object with a string type.")
            return
        kind: str = raw["type"]
        if kind == "connection_init":
            if self.connection_acknowledged:
                await self._connection_error("The connection is already initialised.")
                return
        elif kind in ("start", "stop"):
            if not _is_id(raw.get("id")):
                await self._connection_error(f'A "{kind}" message needs a string id.')
                return
            if kind == "start":
                request = _request(raw.get("payload"))
                if request is None:
                    await self.send_message(
                        {
                            "type": "error",
                            "id": raw["id"],
                            "payload": {"message": "The payload must be a GraphQL request."},
                        }
                    )
                    return
                message = cast(OperationMessage, {**raw, "payload": request})
        elif kind != "connection_terminate":
            await self._connection_error("Unknown message type.")
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload")
        # A payload that is not an object carries no token: refused like a wrong one.
        self.context.connection_params = payload if isinstance(payload, dict) else {}
        try:
            ack = await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError as exc:
            await self.send_message({"type": "connection_error", "payload": exc.payload})
            await self.websocket.close(code=FORBIDDEN, reason="Forbidden")
            return
        if isinstance(ack, UnsetType) or ack is None:
            await self.send_message({"type": "connection_ack"})
        else:
            await self.send_message({"type": "connection_ack", "payload": ack})
        self.connection_acknowledged = True
        if self.keep_alive:
            self.keep_alive_task = asyncio.create_task(self.handle_keep_alive())

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        with (
            counted(query, operation_name),
            suppress(WebSocketDisconnected),  # the client left: nobody to answer
        ):
            await super().handle_async_results(operation_id, query, operation_name, variables)

    async def _connection_error(self, message: str) -> None:
        await self.send_message({"type": "connection_error", "payload": {"message": message}})
