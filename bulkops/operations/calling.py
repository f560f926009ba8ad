"""Operations whose batch step calls an outside service: read → call → write.

A database batch step holds one transaction around its work; a call that takes seconds
must not. A calling operation splits its batch in three:

1. `read_items` in a short transaction: what each item's call needs, and the items
   settled without a call (a product that already has a value: skipped);
2. `call` once per item, outside any transaction, several at once (the provider's
   `Limits.concurrency`), through the shared limiter, retries and circuit of
   `bulkops.outside`, each with a stable idempotency key (run id + item id);
3. `write_results` in one transaction with the job's counters, usage and cursor, so the
   database effect stays exactly once; the calls are at least once (a killed worker
   repeats at most one batch's calls, with the same keys).

The engine that runs the three steps for jobs and inline runs is
`bulkops.services.calls`."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from bulkops.config import Settings
from bulkops.operations.base import BatchContext, BatchOutcome, Operation
from bulkops.outside import Limits, OutsideCalls, Usage
from bulkops.storage import Storage

# A job's batch holds about this many seconds of calls at the provider's rate.
CALL_BATCH_SECONDS = 8.0
MAX_CALL_BATCH = 1000


class HasId(Protocol):
    @property
    def id(self) -> int:
        """The item's key (its place in the walk: the job's cursor)."""


P = TypeVar("P", bound=BaseModel)
ItemT = TypeVar("ItemT", bound=HasId)
ResultT = TypeVar("ResultT")


@dataclass
class CallBatch(Generic[ItemT]):
    """What `read_items` found: the items to call for, in key order, and the outcome of
    the batch's other items (skipped, or failed without a call)."""

    items: list[ItemT]
    settled: BatchOutcome = field(default_factory=BatchOutcome)


@dataclass
class CallContext:
    """What one call works with: the process's outside calls and stored files, the
    settings, the tenant, the run (a job's id, or an inline run's own id) and the batch's
    usage to count into."""

    outside: OutsideCalls
    storage: Storage
    settings: Settings
    tenant_id: str
    run_id: str
    usage: Usage

    def idempotency_key(self, item_id: int) -> str:
        """The same for every attempt of an item's call in this run, across workers."""
        return f"bulkops-{self.run_id}-{item_id}"


class CallingOperation(Operation[P], Generic[P, ItemT, ResultT]):
    """An operation whose items each need a call to an outside service."""

    # Calls run outside the transaction; a dry run reads and counts, it does not call.
    dry_run_applies: ClassVar[bool] = False
    # The provider's name: the limiter's and the circuit's key ("llm", "fetch:HOST").
    provider: ClassVar[str]

    @abstractmethod
    def limits(self, settings: Settings) -> Limits:
        """How the provider may be called."""

    def batch_size(self, settings: Settings) -> int:
        """Items per batch of a job: what the provider's rate allows in about
        `CALL_BATCH_SECONDS` (at least the operation's own batch size, at most
        `MAX_CALL_BATCH`). Between two batches the calls in flight drain before the next
        batch is read, which costs about one answer's time; a batch of several seconds of
        calls keeps that a small share, and a killed worker still repeats at most those
        few seconds of calls."""
        size = self.thresholds.batch_size
        rate = self.limits(settings).requests_per_second
        if rate is not None:
            size = max(size, math.ceil(rate * CALL_BATCH_SECONDS))
        return min(size, MAX_CALL_BATCH)

    def check_configured(self, settings: Settings) -> None:
        """Refuse (InputError PROVIDER_NOT_CONFIGURED naming the setting) when the
        provider is not set up. Default: nothing needed."""

    def stop_reason(self, params: P, used: Usage) -> str | None:
        """Why the run must stop starting calls, given what it has used so far (a token
        budget reached), or None. Items not called then are reported skipped with it."""
        return None

    @abstractmethod
    async def read_items(self, ctx: BatchContext, params: P, ids: list[int]) -> CallBatch[ItemT]:
        """What each of `ids` needs for its call, in a short transaction (`ctx.conn`)."""

    @abstractmethod
    async def call(self, calls: CallContext, params: P, item: ItemT) -> ResultT:
        """The item's call (raise CallFailed for an item error; ProviderUnavailable stops
        the batch's calls until the provider answers again)."""

    @abstractmethod
    async def write_results(
        self, ctx: BatchContext, params: P, done: list[tuple[ItemT, ResultT]]
    ) -> BatchOutcome:
        """Write the results of the calls that succeeded, set-based, inside the batch's
        transaction (`ctx.conn`); the engine adds the failed calls and the settled items."""

    async def apply_batch(self, ctx: BatchContext, params: P, ids: list[int]) -> BatchOutcome:
        raise TypeError(f"{self.name} calls an outside service; bulkops.services.calls runs it")


def is_calling(op: Operation[Any]) -> bool:
    return isinstance(op, CallingOperation)
