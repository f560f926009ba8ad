"""The engine of calling operations: the call step of a batch, and inline runs.

A calling operation's batch is read in a short transaction, its items are called outside
any transaction, and the results are written in one transaction (jobs: `call_jobs.py`;
inline runs: `run_inline` here). Between the two transactions, `call_items` runs the
item calls, at most the provider's `Limits.concurrency` at once, and every `WATCH_SECONDS`
asks its run how things stand (a job: its lease extended, its status read) so that:

- a cancel stops new calls (those in flight finish and are written);
- a stop reason (`CallingOperation.stop_reason`, a token budget) stops new calls, the
  rest of the selection then being reported skipped with it;
- while most calls in flight wait for the shared limiter, the job's current step says
  "waiting for rate limit";
- a provider that is down (`ProviderUnavailable`) fails no item: calls stop, the run waits
  with its waiting reason until the provider's next try, then calls the items that have
  no result yet; past `Settings.outside_outage_hold_seconds` it gives up (a job hands its
  batch back to the queue, an inline run reports the rest skipped)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from bulkops.db.pool import tenant_transaction
from bulkops.domain import ErrorPolicy
from bulkops.models import ItemFailure
from bulkops.operations.base import SAMPLE_SIZE, BatchContext, BatchOutcome
from bulkops.operations.calling import CallContext, CallingOperation
from bulkops.outside import CallFailed, ProviderUnavailable, Usage
from bulkops.selection import Selection
from bulkops.services.container import Services
from bulkops.services.inline import InlineResult, selection_batches
from bulkops.services.options import BulkOptions

# How often a run with calls in flight looks at its job (lease, cancel, current step).
WATCH_SECONDS = 1.0
RUNNING = "running"
WAITING_FOR_RATE_LIMIT = "waiting for rate limit"
# The error recorded when a stop reason ends a run; the rest is reported skipped.
STOPPED = "BUDGET_REACHED"
# The error of an inline run that gave up waiting for its provider.
UNAVAILABLE = "PROVIDER_UNAVAILABLE"


class Watch(Protocol):
    """What the call step asks of its run while calls are in flight."""

    async def look(self, *, step: str, waiting_reason: str | None) -> bool:
        """Show `step` and `waiting_reason` on the run; whether calls may go on."""

    def hold_over(self) -> bool:
        """Whether the run must give up waiting for a provider now (a draining worker)."""


@dataclass
class CallRound:
    """What the call step of one batch did: the results, in key order, the item
    failures, what the calls cost, and why it stopped before calling every item."""

    done: list[tuple[Any, Any]] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    # Items with no result yet (not called, or called while the provider was down).
    pending: list[Any] = field(default_factory=list)
    cancelled: bool = False
    stopped: str | None = None
    # The provider stayed down past the hold: the batch goes back (nothing is written).
    unavailable: ProviderUnavailable | None = None

    @property
    def outcome(self) -> BatchOutcome:
        """The failed calls as a batch outcome (the written results come from the op)."""
        return BatchOutcome(failed=len(self.failures), errors=list(self.failures))


async def call_items(
    op: CallingOperation[Any, Any, Any],
    calls: CallContext,
    params: Any,
    items: list[Any],
    *,
    used: Usage,
    watch: Watch,
    error_policy: str,
    waiting_reason: str | None = None,
) -> CallRound:
    """Call `op` for every item of `items` (see the module's docstring); `used` is what
    the run had used before this batch (for `stop_reason`), `waiting_reason` what the run
    shows now (kept until a call goes through). Under ABORT no call starts after an item
    failed."""
    settings = calls.settings
    found = CallRound(usage=calls.usage, pending=sorted(items, key=lambda i: i.id))
    results: dict[int, Any] = {}
    waited = 0.0
    reason = waiting_reason
    while found.pending:
        down = await _round(op, calls, params, found, results, used, watch, error_policy, reason)
        if down is None or found.cancelled or found.stopped:
            break
        reason = down.reason
        pause = max(0.0, down.next_try_at - time.time())
        if watch.hold_over() or waited + pause > settings.outside_outage_hold_seconds:
            found.unavailable = down
            break
        waited += pause
        waited_out = await _wait_until(down.next_try_at, watch, reason)
        if waited_out == "stop":
            found.cancelled = True
            break
        if waited_out == "hold over":
            found.unavailable = down
            break
    by_id = {item.id: item for item in items}
    found.done = [(by_id[key], results[key]) for key in sorted(results)]
    return found


async def _round(
    op: CallingOperation[Any, Any, Any],
    calls: CallContext,
    params: Any,
    found: CallRound,
    results: dict[int, Any],
    used: Usage,
    watch: Watch,
    error_policy: str,
    reason: str | None,
) -> ProviderUnavailable | None:
    """Call the pending items until each has a result or a failure, or calls must stop;
    returns the provider's outage that stopped them, if one did. `reason` is the waiting
    reason shown until a call goes through."""
    concurrency = max(1, op.limits(calls.settings).concurrency)
    queue = list(found.pending)
    in_flight: dict[asyncio.Task[Any], Any] = {}
    down: ProviderUnavailable | None = None
    next_look = time.monotonic() + WATCH_SECONDS
    try:
        while queue or in_flight:
            while queue and len(in_flight) < concurrency and down is None:
                if found.cancelled or found.stopped:
                    break
                if error_policy == ErrorPolicy.ABORT and found.failures:
                    break
                so_far = Usage()
                so_far.add(used)
                so_far.add(calls.usage)
                found.stopped = op.stop_reason(params, so_far)
                if found.stopped:
                    break
                item = queue.pop(0)
                in_flight[asyncio.create_task(op.call(calls, params, item))] = item
                # Let the call start (and count what it is about to use) before the next
                # stop_reason is asked.
                await asyncio.sleep(0)
            if not in_flight:
                break
            timeout = max(0.0, next_look - time.monotonic())
            finished, _ = await asyncio.wait(
                in_flight, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in sorted(finished, key=lambda t: in_flight[t].id):
                item = in_flight.pop(task)
                error = task.exception()
                if isinstance(error, ProviderUnavailable):
                    # Not failed: called again once the provider is back.
                    if down is None or error.next_try_at > down.next_try_at:
                        down = error
                    continue
                reason = None
                if error is None:
                    results[item.id] = task.result()
                elif isinstance(error, CallFailed):
                    found.failures.append(ItemFailure(error.code, str(error), item_id=item.id))
                else:
                    raise error
            if time.monotonic() >= next_look:
                waiting = _mostly_waiting(calls.usage, in_flight)
                step = WAITING_FOR_RATE_LIMIT if waiting else RUNNING
                if not await watch.look(step=step, waiting_reason=reason):
                    found.cancelled = True
                next_look = time.monotonic() + WATCH_SECONDS
    finally:
        # Only when the batch is abandoned (an unexpected error, the slice cancelled).
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
    settled = set(results) | {f.item_id for f in found.failures}
    found.pending = [item for item in found.pending if item.id not in settled]
    return down


def _mostly_waiting(usage: Usage, in_flight: dict[asyncio.Task[Any], Any]) -> bool:
    return bool(in_flight) and usage.waiting_now * 2 > len(in_flight)


async def _wait_until(when: float, watch: Watch, reason: str) -> str:
    """Wait until `when` (epoch seconds) showing `reason`: "go" then, or earlier "stop"
    (calls must stop) or "hold over" (the run must give up waiting)."""
    while True:
        if not await watch.look(step=RUNNING, waiting_reason=reason):
            return "stop"
        if watch.hold_over():
            return "hold over"
        left = when - time.time()
        if left <= 0:
            return "go"
        await asyncio.sleep(min(WATCH_SECONDS, left))


class _Undo(Exception):
    """Undo an inline batch's writes (a failed item under ABORT)."""


class _Inline:
    """An inline run has no job to look at: it goes on until it is done, and gives up
    waiting for a provider only past the hold."""

    async def look(self, *, step: str, waiting_reason: str | None) -> bool:
        return True

    def hold_over(self) -> bool:
        return False


async def run_inline(
    services: Services,
    tenant_id: str,
    op: CallingOperation[Any, Any, Any],
    params: Any,
    selection: Selection,
    *,
    matched: int,
    options: BulkOptions,
) -> InlineResult:
    """An inline run of a calling operation, after the request's counting transaction:
    per batch, its items read in one transaction, called with none open, and written in
    another. Batches written stay written: under ABORT the run stops at the first batch
    with a failed item, which is not applied (`aborted`)."""
    stored = params.model_dump(mode="json")
    run_id = uuid.uuid4().hex
    total = BatchOutcome()
    used = Usage()
    size = op.thresholds.batch_size
    after = 0
    position = 0
    while True:
        async with tenant_transaction(services.pool, tenant_id) as conn:
            ctx = BatchContext(conn=conn, storage=services.storage, tenant_id=tenant_id)
            if selection.ids is not None:
                ids = list(selection.ids[position : position + size])
                position += size
            else:
                ids = await op.filter_batch(conn, selection, after=after, limit=size)
            if not ids:
                break
            after = ids[-1]
            read = await op.read_items(ctx, params, ids)
        calls = CallContext(
            services.outside, services.storage, services.settings, tenant_id, run_id, Usage()
        )
        found = await call_items(
            op,
            calls,
            params,
            read.items,
            used=used,
            watch=_Inline(),
            error_policy=options.error_policy,
        )
        used.add(found.usage)
        outcome = BatchOutcome()
        outcome.add(read.settled)
        try:
            async with tenant_transaction(services.pool, tenant_id) as conn:
                ctx = BatchContext(conn=conn, storage=services.storage, tenant_id=tenant_id)
                if found.done:
                    outcome.add(await op.write_results(ctx, params, found.done))
                outcome.add(found.outcome)
                if outcome.failed and options.error_policy == ErrorPolicy.ABORT:
                    raise _Undo
        except _Undo:
            # The batches before are written; this one is not applied.
            total.add(BatchOutcome(failed=outcome.failed, errors=outcome.errors))
            return InlineResult(op.name, matched, total, False, [], True, stored)
        total.add(outcome)
        ended = found.stopped or (found.unavailable.reason if found.unavailable else None)
        if ended:
            code = STOPPED if found.stopped else UNAVAILABLE
            total.skipped += max(0, matched - total.processed)
            total.add(BatchOutcome(errors=[ItemFailure(code, ended)]))
            break
    # What the selection held is released as when a job ends (an import's staged rows).
    async with tenant_transaction(services.pool, tenant_id) as conn:
        await op.release(conn, selection)
    return InlineResult(op.name, matched, total, False, [], params=stored)


async def dry_run(
    ctx: BatchContext,
    op: CallingOperation[Any, Any, Any],
    params: Any,
    selection: Selection,
    *,
    matched: int,
) -> InlineResult:
    """What an inline run would do, without calling: the items it would call counted as
    succeeded, those settled without a call as the operation reads them, and the first
    few items it would call shown."""
    total = BatchOutcome()
    shown: list[int] = []
    async for ids in selection_batches(ctx.conn, op, selection, op.thresholds.batch_size):
        read = await op.read_items(ctx, params, ids)
        total.add(read.settled)
        total.succeeded += len(read.items)
        shown.extend(item.id for item in read.items[: SAMPLE_SIZE - len(shown)])
    sample = await op.sample(ctx.conn, shown)
    stored = params.model_dump(mode="json")
    return InlineResult(op.name, matched, total, True, sample, params=stored)
