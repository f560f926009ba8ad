"""What every GraphQL type module shares: the resolver info, cursors, page info."""

from __future__ import annotations

import base64
from typing import Any

import strawberry

from bulkops.graphql.context import Context
from bulkops.services.container import Services

Info = strawberry.Info[Context, None]


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


def services_of(info: Info) -> Services:
    """The process's services, as the resolvers call them."""
    state = info.context.state
    return Services(
        pool=state["pool"],
        redis=state["redis"],
        storage=state["storage"],
        settings=state["settings"],
    )
