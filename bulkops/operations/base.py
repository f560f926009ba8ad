"""What every operation is: its parameters, thresholds and set-based batch step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import asyncpg
from pydantic import BaseModel

from bulkops.errors import BulkopsError
from bulkops.models import ItemFailure

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
