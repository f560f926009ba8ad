"""A page of rows, as the read services return them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Page(Generic[R]):
    """Up to `limit` rows in key order, whether more follow, and how many match in all."""

    rows: list[R]
    has_next: bool
    total: int

    @classmethod
    def of(cls, read: list[R], *, limit: int, total: int) -> Page[R]:
        """The page of a read of `limit + 1` rows: the extra row only tells that more follow."""
        return cls(rows=read[:limit], has_next=len(read) > limit, total=total)
