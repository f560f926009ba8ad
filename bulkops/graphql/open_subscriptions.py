"""Counting the open subscriptions of this API process (`bulkops_subscriptions`).

They are counted where each client's operation runs, in the websocket protocol handlers,
rather than in the subscription resolvers: identical `job` subscriptions share one
execution (see `shared_streams`), and an operator asks how many clients follow, not how
many executions serve them."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse

from bulkops.metrics import SUBSCRIPTIONS

# Longer documents are parsed again each time rather than kept in the cache below (256
# documents of any size could hold a lot of memory); real subscriptions are a few lines.
MAX_CACHED_QUERY = 4096


def counted(query: str, operation_name: str | None) -> AbstractContextManager[object]:
    """Counts the operation as an open subscription while it runs, if it is one (queries
    and mutations sent over a websocket are not)."""
    if is_subscription(query, operation_name):
        return SUBSCRIPTIONS.track_inprogress()
    return nullcontext()


def is_subscription(query: str, operation_name: str | None) -> bool:
    if len(query) <= MAX_CACHED_QUERY:
        return _cached_is_subscription(query, operation_name)
    return _is_subscription(query, operation_name)


@lru_cache(maxsize=256)
def _cached_is_subscription(query: str, operation_name: str | None) -> bool:
    return _is_subscription(query, operation_name)


def _is_subscription(query: str, operation_name: str | None) -> bool:
    """False when the document does not parse or names no single operation (it runs
    only to answer with an error)."""
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
    return len(found) == 1 and found[0].operation is OperationType.SUBSCRIPTION
