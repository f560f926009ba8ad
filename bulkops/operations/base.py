"""What every operation is: its parameters, thresholds and set-based batch step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import asyncpg
from pydantic import BaseModel

from bulkops.db import products as products_db
from bulkops.db.datasets import dataset_exists
from bulkops.errors import BulkopsError, NotFoundError
from bulkops.models import ItemFailure, ProductRow
from bulkops.selection import Selection

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class Thresholds:
    """AUTO runs inline up to `inline_threshold` items; INLINE is refused above
    `inline_limit`; a background job changes `batch_size` items per transaction."""

    inline_threshold: int
    inline_limit: int
    batch_size: int


@dataclass
class BatchOutcome:
    """What one batch (or, added up, one whole run) did."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[ItemFailure] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    changed_ids: list[int] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.succeeded + self.failed + self.skipped

    def add(self, other: BatchOutcome, *, keep_errors: int = 1000) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.skipped += other.skipped
        room = keep_errors - len(self.errors)
        if room > 0:
            self.errors.extend(other.errors[:room])
        for key, value in other.counters.items():
            self.counters[key] = self.counters.get(key, 0) + value
        room = SAMPLE_SIZE - len(self.changed_ids)
        if room > 0:
            self.changed_ids.extend(other.changed_ids[:room])


class JobAborted(BulkopsError):
    """The operation cannot go on."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class NoParams(BaseModel):
    """An operation that takes nothing besides its selection."""


P = TypeVar("P", bound=BaseModel)


class Operation(ABC, Generic[P]):
    """One bulk operation. Inline runs and background jobs both call `apply_batch`,
    so they cannot disagree."""

    name: ClassVar[str]
    description: ClassVar[str]
    thresholds: ClassVar[Thresholds]
    params_model: ClassVar[type[BaseModel]]
    # Operation-specific counters reported in the summary, e.g. deletedImages.
    counter_names: ClassVar[tuple[str, ...]] = ()

    def parse_params(self, raw: dict[str, Any]) -> P:
        return self.params_model.model_validate(raw)  # type: ignore[return-value]

    async def check(self, conn: asyncpg.Connection, params: P) -> None:
        """Refuse parameters that name missing things (raise InputError); default: none."""

    # The items of an operation are products unless it says otherwise: the three methods
    # below are where an operation over other items (images, uploaded rows) says how
    # its selection is counted, checked and walked in key order.

    async def count(self, conn: asyncpg.Connection, selection: Selection) -> int:
        """How many items the selection holds; unknown or foreign ids are refused."""
        if selection.ids is not None:
            missing = await products_db.missing_ids(conn, list(selection.ids))
            if missing:
                shown = ", ".join(str(i) for i in missing[:10])
                more = " and more" if len(missing) > 10 else ""
                raise NotFoundError(
                    f"No product with id {shown}{more}.", field=["selection", "ids"]
                )
            return len(selection.ids)
        flt = selection.filter
        if (
            flt is not None
            and flt.dataset_id is not None
            and not await dataset_exists(conn, flt.dataset_id)
        ):
            raise NotFoundError(
                f"Dataset {flt.dataset_id} does not exist.",
                field=["selection", "filter", "datasetId"],
            )
        return await products_db.count_filter(conn, flt)

    async def filter_batch(
        self, conn: asyncpg.Connection, selection: Selection, *, after: int, limit: int
    ) -> list[int]:
        """The next `limit` item ids of a filter selection past `after`, in key order."""
        return await products_db.filter_batch_ids(conn, selection.filter, after=after, limit=limit)

    async def sample(self, conn: asyncpg.Connection, ids: list[int]) -> list[ProductRow]:
        """The products a dry run shows for the items `ids`."""
        return await products_db.products_by_ids(conn, ids)

    async def release(self, conn: asyncpg.Connection, selection: Selection) -> None:
        """Let go of what the selection holds once its job has ended (an upload's staged
        rows); called in the transaction that ends the job. Default: nothing."""

    @abstractmethod
    async def apply_batch(
        self, conn: asyncpg.Connection, params: P, ids: list[int]
    ) -> BatchOutcome:
        """Change the products `ids` in one set-based step inside the caller's transaction."""


def not_found_failures(ids: list[int], found: set[int]) -> list[ItemFailure]:
    return [
        ItemFailure(code="NOT_FOUND", message="The product no longer exists.", item_id=i)
        for i in ids
        if i not in found
    ]
