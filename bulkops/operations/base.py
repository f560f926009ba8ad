"""What every operation is: its parameters, thresholds and set-based batch step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

import asyncpg
from pydantic import BaseModel

from bulkops.db import products as products_db
from bulkops.db.datasets import dataset_exists
from bulkops.errors import BulkopsError, NotFoundError
from bulkops.models import ItemFailure, ProductRow
from bulkops.selection import Selection
from bulkops.storage import Storage

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class Thresholds:
    """AUTO runs inline up to `inline_threshold` items; INLINE is refused above
    `inline_limit`; a background job changes `batch_size` items per transaction."""

    inline_threshold: int
    inline_limit: int
    batch_size: int


@dataclass(frozen=True)
class BatchContext:
    """What a batch step works with, passed to it explicitly: the connection of the
    transaction the batch runs in (scoped to the tenant), the stored files, and the
    tenant."""

    conn: asyncpg.Connection
    storage: Storage
    tenant_id: str


@dataclass(frozen=True)
class Counter:
    """A count an operation reports besides succeeded/failed/skipped: a field of its
    summary (as an Int) and a key of `Job.result`."""

    name: str
    description: str | None = None


class Retry(StrEnum):
    """What retryJob does with a finished job of the operation."""

    # A child job over the failed item ids, or over the same selection.
    ITEMS = "ITEMS"
    # A child job over the operation's staged input rows, copied for the child.
    STAGED_INPUT = "STAGED_INPUT"
    # Refused (NOT_RETRYABLE) with the operation's `not_retryable` message.
    NEVER = "NEVER"


@dataclass
class BatchOutcome:
    """What one batch (or, added up, one whole run) did."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[ItemFailure] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    # The items a batch changed (for a match, the products it matched), all of them; a
    # whole run's outcome keeps the first few as its sample. When `changed_products`, they
    # are products: a chain's next step can take them as its selection (SUCCEEDED).
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
    # Operation-specific counts reported in the summary and the job's result, in order.
    counters: ClassVar[tuple[Counter, ...]] = ()
    # The GraphQL summary type's description (what its items and counts mean).
    summary_description: ClassVar[str | None] = None
    # Fields of the summary beyond the counters that the API adds from the run's params:
    # "rows" (matchProducts' per-row results), "resultFile" (the written file).
    summary_extras: ClassVar[tuple[str, ...]] = ()
    # Whether batches queue stored files for removal (purged once the run has ended).
    deletes_files: ClassVar[bool] = False
    retry: ClassVar[Retry] = Retry.ITEMS
    # Whether the items a batch reports changed (`BatchOutcome.changed_ids`) are products.
    changed_products: ClassVar[bool] = True
    # Why retryJob refuses, for `Retry.NEVER`.
    not_retryable: ClassVar[str] = ""

    @property
    def counter_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.counters)

    # Whether a dry run tries each batch in a savepoint; when not (an export would write
    # its file), it reports every item as done and shows the first few.
    dry_run_applies: ClassVar[bool] = True

    def bind(self, raw: dict[str, Any], selection: Selection) -> dict[str, Any]:
        """The parameters a run needs, from the request's and from its selection (a staged
        input's id) or made fresh (an export's file id). Default: the request's."""
        return raw

    async def prepare(self, ctx: BatchContext, params: P) -> None:
        """Make what the run writes into before it starts, in the submission's transaction
        (an export's file). Not called for a dry run. Default: nothing."""

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
            ids = list(selection.ids)
            # Counting them is the cheap check; the missing ones are looked for only when
            # some are (a selection's ids are unique, so the count is exact).
            if await products_db.count_ids(conn, ids) == len(ids):
                return len(ids)
            missing = await products_db.missing_ids(conn, ids)
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
    async def apply_batch(self, ctx: BatchContext, params: P, ids: list[int]) -> BatchOutcome:
        """Change the items `ids` in one set-based step inside the caller's transaction
        (`ctx.conn`)."""


def not_found_failures(ids: list[int], found: set[int]) -> list[ItemFailure]:
    return [
        ItemFailure(code="NOT_FOUND", message="The product no longer exists.", item_id=i)
        for i in ids
        if i not in found
    ]
