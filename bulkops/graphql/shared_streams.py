"""Subscriptions shared by identical subscribers of one API process (graphql-transport-ws).

Websocket clients of one tenant that subscribe to `job` with the same document, operation
name and variables (a thousand browser tabs following one job) share one execution: the
subscription runs once, each of its results is executed and encoded to JSON once, and
every subscriber's connection sends that same text. A subscriber that joins a running
stream first gets the stream's latest result (the current state), then every later one,
in order; so what each sees is what a subscription of its own would show. Queries and
mutations sent over a websocket run once per operation, as usual.

A subscriber whose connection is slower than the stream gets its results queued; one
that falls `BACKLOG` results behind loses the oldest. (The stream itself, when it falls
behind the job, skips intermediate progress versions, never a status change.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Hashable
from functools import lru_cache
from typing import Any, Protocol, cast

from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import CompleteMessage
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from bulkops.graphql.context import Context
from bulkops.graphql.open_subscriptions import counted
from bulkops.graphql.ws_protocols import TransportWSHandler

log = logging.getLogger(__name__)

BACKLOG = 1000


# Root fields whose stream can be shared: a joiner's first result must be what its own
# subscription would start with. `job` starts with the job's current state, which is the
# latest result of a running stream; `jobs` starts with a list of unfinished jobs, which is
# not, so it is never shared.
SHARED_FIELDS = frozenset({"job"})

# A shared subscription's document is a few lines. A longer one takes the usual path
# rather than being parsed once more and kept in the cache below, where 256 documents of
# any size could hold gigabytes.
MAX_SHARED_QUERY = 4096


def _shareable(query: str, operation_name: str | None) -> bool:
    return len(query) <= MAX_SHARED_QUERY and _shareable_document(query, operation_name)


@lru_cache(maxsize=256)
def _shareable_document(query: str, operation_name: str | None) -> bool:
    """Whether the operation `operation_name` of `query` is a subscription of one of
    `SHARED_FIELDS`; False when the document does not parse or names no single operation
    (the usual path reports it)."""
    try:
        document = parse(query)
    except GraphQLError:
        return False
    found = [
        d
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (operation_name is None or (d.name is not None and d.name.value == operation_name))
    ]
    if len(found) != 1 or found[0].operation is not OperationType.SUBSCRIPTION:
        return False
    roots = found[0].selection_set.selections
    return (
        len(roots) == 1 and isinstance(roots[0], FieldNode) and roots[0].name.value in SHARED_FIELDS
    )


# What a stream hands its subscribers: a result's encoded payload, the first result when
# it is an error before execution, or the end (with the exception that ended it, if any).
_Next = tuple[str, str]
_Pre = tuple[str, PreExecutionError]
_End = tuple[str, BaseException | None]
_Item = _Next | _Pre | _End


class _Subscriber:
    __slots__ = ("_pending", "_waiter")

    def __init__(self) -> None:
        self._pending: deque[_Item] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: _Item) -> None:
        self._pending.append(item)
        if len(self._pending) > BACKLOG:
            self._pending.popleft()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> _Item:
        while not self._pending:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._pending.popleft()


class _Stream:
    """One running subscription and the subscribers it serves."""

    def __init__(self, streams: SharedStreams, key: Hashable) -> None:
        self._streams = streams
        self._key = key
        self.subscribers: set[_Subscriber] = set()
        self.latest: _Next | _Pre | None = None
        self.task: asyncio.Task[None] | None = None

    def join(self) -> _Subscriber:
        subscriber = _Subscriber()
        if self.latest is not None:
            subscriber.put(self.latest)
        self.subscribers.add(subscriber)
        return subscriber

    def leave(self, subscriber: _Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if not self.subscribers and self.task is not None:
            # Nobody is left to see it: stop the subscription (and its listening).
            self._streams.forget(self._key, self)
            self.task.cancel()

    def _send(self, item: _Item) -> None:
        for subscriber in self.subscribers:
            subscriber.put(item)

    async def run(self, handler: BaseGraphQLTransportWSHandler[Context, None], op: Any) -> None:
        failure: BaseException | None = None
        try:
            source = await handler.schema.stream(
                op.query,
                variable_values=op.variables,
                context_value=handler.context,
                root_value=handler.root_value,
                operation_name=op.operation_name,
            )
            async with aclosing(source):
                async for result in source:
                    if self.latest is None and isinstance(result, PreExecutionError):
                        self.latest = ("pre", result)
                        self._send(self.latest)
                        break
                    if not isinstance(result, ExecutionResult):
                        failure = GraphQLError(
                            "Incremental delivery is not supported over graphql-transport-ws"
                        )
                        break
                    payload: dict[str, Any] = {"data": result.data}
                    if result.errors:
                        payload["errors"] = [err.formatted for err in result.errors]
                    if result.extensions:
                        payload["extensions"] = result.extensions
                    self.latest = ("next", json.dumps(payload, separators=(",", ":")))
                    self._send(self.latest)
        except asyncio.CancelledError:
            self._streams.forget(self._key, self)
            self._send(("end", None))
            raise
        except Exception as exc:
            log.exception("a shared subscription failed")
            failure = exc
        finally:
            # Later subscribers start a stream of their own.
            self._streams.forget(self._key, self)
        self._send(("end", failure))


class SharedStreams:
    """The process's running shared subscriptions, by tenant, scopes, document and
    variables."""

    def __init__(self) -> None:
        self._streams: dict[Hashable, _Stream] = {}

    def subscribe(
        self, handler: BaseGraphQLTransportWSHandler[Context, None], op: Any, key: Hashable
    ) -> tuple[_Stream, _Subscriber]:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(self, key)
            stream.task = asyncio.create_task(stream.run(handler, op), name="bulkops-shared-sub")
        return stream, stream.join()

    def forget(self, key: Hashable, stream: _Stream) -> None:
        if self._streams.get(key) is stream:
            del self._streams[key]

    async def close(self) -> None:
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            if stream.task is not None:
                stream.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream.task


class _SharingView(Protocol):
    """The view a SharedStreamsHandler serves: it holds the process's shared streams."""

    streams: SharedStreams


class SharedStreamsHandler(TransportWSHandler):
    """graphql-transport-ws with identical subscriptions shared (see the module), on the
    handler that checks each message's shape first."""

    def _share_key(self, operation: Operation[Context, None]) -> Hashable | None:
        caller = self.context.caller
        if caller is None or not _shareable(operation.query, operation.operation_name):
            return None
        try:
            variables = json.dumps(operation.variables, sort_keys=True)
        except (TypeError, ValueError):
            return None
        # The scopes too: a joiner skips the execution, where they are checked.
        scopes = tuple(sorted(caller.scopes))
        return (caller.tenant_id, scopes, operation.query, operation.operation_name, variables)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        with counted(operation.query, operation.operation_name):
            await self._run_operation(operation)

    async def _run_operation(self, operation: Operation[Context, None]) -> None:
        key = self._share_key(operation)
        if key is None:
            await super().run_operation(operation)
            return
        streams = cast(_SharingView, self.view).streams
        stream, subscriber = streams.subscribe(self, operation, key)
        prefix = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        try:
            while True:
                item = await subscriber.get()
                if item[0] == "next":
                    text = item[1]
                    assert isinstance(text, str)
                    if operation.completed:
                        return
                    await self._send_text(prefix + text + "}")
                elif item[0] == "pre":
                    error = item[1]
                    assert isinstance(error, PreExecutionError)
                    with contextlib.suppress(Exception):
                        await self._handle_pre_execution_error(operation, error)
                    return
                else:
                    failure = item[1]
                    if isinstance(failure, GraphQLError):
                        await operation.send_initial_errors([failure])
                    else:
                        await operation.send_operation_message(
                            CompleteMessage(id=operation.id, type="complete")
                        )
                    return
        except WebSocketDisconnected:
            return
        finally:
            stream.leave(subscriber)

    async def _send_text(self, text: str) -> None:
        ws = getattr(self.websocket, "ws", None)
        if ws is None:  # not Starlette's websocket: let the adapter encode
            await self.websocket.send_json(json.loads(text))
            return
        try:
            await ws.send_text(text)
        except Exception as exc:
            raise WebSocketDisconnected from exc
