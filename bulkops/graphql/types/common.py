"""What every GraphQL type module shares: the resolver info, cursors, pages."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import strawberry

from bulkops.graphql.context import Context

Info = strawberry.Info[Context, None]

T = TypeVar("T")
R = TypeVar("R")


def encode_cursor(kind: str, value: str | int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, edges: list[Any], *, has_next: bool, has_previous: bool) -> PageInfo:
        """The page info of `edges` (objects with a `cursor`)."""
        return cls(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )


# Strawberry names a specialisation after its argument: Edge[Product] is ProductEdge and
# Connection[Product] is ProductConnection, the names of the public contract.
@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int


def connection(
    rows: Sequence[R],
    *,
    cursor: Callable[[R], str],
    node: Callable[[R], T],
    has_next: bool,
    has_previous: bool,
    total: int,
) -> Connection[T]:
    """A page of `rows` as edges, each with its cursor and node."""
    edges = [Edge(cursor=cursor(r), node=node(r)) for r in rows]
    return Connection(
        edges=edges,
        page_info=PageInfo.of(edges, has_next=has_next, has_previous=has_previous),
        total_count=total,
    )
