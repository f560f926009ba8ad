"""The inline engine: every batch of a run in the request's transaction, through the same
batch step a job runs, so inline and background runs cannot disagree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bulkops.domain import ErrorPolicy
from bulkops.models import ProductRow
from bulkops.operations.base import SAMPLE_SIZE, BatchContext, BatchOutcome, Operation
from bulkops.selection import Selection
from bulkops.services.options import BulkOptions


@dataclass(frozen=True)
class InlineResult:
    """What an inline run (or dry run) did; `params` are the run's parameters as the job
    would have stored them (an export's file id, a match's staged input)."""

    operation: str
    matched: int
    outcome: BatchOutcome
    dry_run: bool
    sample: list[ProductRow]
    aborted: bool = False
    params: dict[str, Any] = field(default_factory=dict)


class RunUndone(Exception):
    """Undo the run's transaction (dry runs, ABORT policy) and carry its result out."""

    def __init__(self, result: InlineResult) -> None:
        super().__init__()
        self.result = result


class _Rollback(Exception):
    """Undo a dry run's batch (its savepoint)."""


async def selection_batches(
    conn: asyncpg.Connection, op: Operation[Any], selection: Selection, batch_size: int
) -> AsyncIterator[list[int]]:
    """Batches of item ids of an inline run, in key order."""
    if selection.ids is not None:
        ids = list(selection.ids)
        for start in range(0, len(ids), batch_size):
            yield ids[start : start + batch_size]
        return
    after = 0
    while True:
        batch = await op.filter_batch(conn, selection, after=after, limit=batch_size)
        if not batch:
            return
        yield batch
        after = batch[-1]


async def apply_inline(
    ctx: BatchContext,
    op: Operation[Any],
    params: Any,
    selection: Selection,
    *,
    matched: int,
    options: BulkOptions,
) -> InlineResult:
    """Every batch of an inline run, in the caller's transaction. A dry run, or a run
    aborted by its error policy, raises RunUndone carrying its result: the caller's
    transaction is undone."""
    conn = ctx.conn
    stored = params.model_dump(mode="json")
    if options.dry_run and not op.dry_run_applies:
        # Nothing to try in a savepoint (an export would write its file): what would be
        # done is every item, shown by the first few.
        ids = await _first_ids(conn, op, selection)
        sample = await op.sample(conn, ids)
        dry = InlineResult(op.name, matched, BatchOutcome(succeeded=matched), True, sample)
        raise RunUndone(dry)
    total = BatchOutcome()
    async for ids in selection_batches(conn, op, selection, op.thresholds.batch_size):
        if options.dry_run:
            outcome = await _dry_batch(ctx, op, params, ids)
        else:
            outcome = await op.apply_batch(ctx, params, ids)
        total.add(outcome)
        if outcome.failed and options.error_policy == ErrorPolicy.ABORT:
            # Nothing is applied: every item counts as not done.
            total.succeeded = 0
            total.skipped = 0
            total.counters = {key: 0 for key in total.counters}
            raise RunUndone(
                InlineResult(op.name, matched, total, options.dry_run, [], True, stored)
            )
    if options.dry_run:
        # Each batch was undone, so even deleted products can be shown.
        sample = await op.sample(conn, total.changed_ids)
        raise RunUndone(InlineResult(op.name, matched, total, True, sample, params=stored))
    # What the selection held is released as when a job ends (an import's staged rows).
    await op.release(conn, selection)
    return InlineResult(op.name, matched, total, False, [], params=stored)


async def _first_ids(
    conn: asyncpg.Connection, op: Operation[Any], selection: Selection
) -> list[int]:
    if selection.ids is not None:
        return list(selection.ids[:SAMPLE_SIZE])
    return await op.filter_batch(conn, selection, after=0, limit=SAMPLE_SIZE)


async def _dry_batch(
    ctx: BatchContext, op: Operation[Any], params: Any, ids: list[int]
) -> BatchOutcome:
    """Apply one batch inside a savepoint and undo it, keeping what it would have done."""
    outcome = BatchOutcome()
    try:
        async with ctx.conn.transaction():
            outcome = await op.apply_batch(ctx, params, ids)
            raise _Rollback
    except _Rollback:
        pass
    return outcome
