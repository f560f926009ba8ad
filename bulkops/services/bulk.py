"""Submitting a bulk change: validate, count, then run it inline or queue a job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from pydantic import ValidationError

from bulkops.db import jobs as jobs_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError
from bulkops.models import JobState, ProductRow
from bulkops.operations import get_operation
from bulkops.operations.base import BatchOutcome, JobAborted, Operation
from bulkops.selection import Selection
from bulkops.services.progress import publish_state
from bulkops.services.queue import enqueue_slice
from bulkops.services.storage import LocalStorage, purge_deleted_files


@dataclass(frozen=True)
class BulkOptions:
    mode: str = "AUTO"
    dry_run: bool = False
    idempotency_key: str | None = None
    priority: str = "NORMAL"
    error_policy: str = "CONTINUE"


@dataclass(frozen=True)
class Services:
    """What the services need from the process: pools, queue and storage."""

    pool: asyncpg.Pool
    redis: ArqRedis
    storage: LocalStorage


@dataclass(frozen=True)
class InlineResult:
    operation: str
    matched: int
    outcome: BatchOutcome
    dry_run: bool
    sample: list[ProductRow]
    aborted: bool = False


@dataclass(frozen=True)
class QueuedResult:
    job: JobState


class _Rollback(Exception):
    """Undo the transaction (dry runs, ABORT policy) and carry its outcome out."""


def field_path(loc: tuple[int | str, ...]) -> list[str]:
    names = {"dataset_id": "datasetId"}
    return [names.get(str(part), str(part)) for part in loc]


def parse_params(op: Operation[Any], raw: dict[str, Any]) -> Any:
    try:
        return op.parse_params(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(
            first["msg"], code="INVALID_INPUT", field=field_path(first["loc"])
        ) from None


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


async def submit(
    services: Services,
    tenant_id: str,
    *,
    operation: str,
    selection: Selection,
    params: dict[str, Any],
    options: BulkOptions,
) -> InlineResult | QueuedResult:
    """Run a bulk change inline or queue it as a job, as its size and `options` decide.

    Raises InputError (with the field) when anything about the request is wrong; nothing
    has changed then."""
    op = get_operation(operation)
    parsed = parse_params(op, params)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        await op.check(conn, parsed)
        matched = await op.count(conn, selection)
    limits = op.thresholds
    if options.mode == "INLINE" and matched > limits.inline_limit and not options.dry_run:
        raise InputError(
            f"{matched} items is more than the {limits.inline_limit} {operation} runs inline; "
            "use mode BACKGROUND.",
            code="INLINE_LIMIT_EXCEEDED",
            field=["options", "mode"],
        )
    inline = (
        options.dry_run
        or options.mode == "INLINE"
        or (options.mode == "AUTO" and matched <= limits.inline_threshold)
    )
    if inline:
        return await run_inline(
            services, tenant_id, op, parsed, selection, matched=matched, options=options
        )
    return QueuedResult(
        await queue_job(services, tenant_id, op, parsed, selection, total=matched, options=options)
    )


async def run_inline(
    services: Services,
    tenant_id: str,
    op: Operation[Any],
    params: Any,
    selection: Selection,
    *,
    matched: int,
    options: BulkOptions,
) -> InlineResult:
    """Apply every batch in one transaction; a dry run (or an aborted run) rolls it back."""
    total = BatchOutcome()
    aborted = False
    sample: list[ProductRow] = []
    try:
        async with tenant_transaction(services.pool, tenant_id) as conn:
            async for ids in selection_batches(conn, op, selection, op.thresholds.batch_size):
                if options.dry_run:
                    outcome = await _dry_batch(conn, op, params, ids)
                else:
                    outcome = await op.apply_batch(conn, params, ids)
                total.add(outcome)
                if outcome.failed and options.error_policy == "ABORT":
                    aborted = True
                    raise _Rollback
            if options.dry_run:
                # Each batch was undone, so even deleted products can be shown.
                sample = await op.sample(conn, total.changed_ids)
                raise _Rollback
    except _Rollback:
        pass
    except JobAborted as exc:
        raise InputError(exc.message, code=exc.code) from None
    if not options.dry_run and not aborted:
        await purge_deleted_files(services.pool, services.storage, tenant_id)
    if aborted:
        # Nothing was applied: every item counts as not done.
        total.succeeded = 0
        total.skipped = 0
        total.counters = {key: 0 for key in total.counters}
    return InlineResult(op.name, matched, total, options.dry_run, sample, aborted)


async def _dry_batch(
    conn: asyncpg.Connection, op: Operation[Any], params: Any, ids: list[int]
) -> BatchOutcome:
    """Apply one batch inside a savepoint and undo it, keeping what it would have done."""
    outcome = BatchOutcome()
    try:
        async with conn.transaction():
            outcome = await op.apply_batch(conn, params, ids)
            raise _Rollback
    except _Rollback:
        pass
    return outcome


async def queue_job(
    services: Services,
    tenant_id: str,
    op: Operation[Any],
    params: Any,
    selection: Selection,
    *,
    total: int,
    options: BulkOptions,
    parent_id: str | None = None,
) -> JobState:
    """Write the job row (and its ids) in one transaction, then enqueue its first slice."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        job = await jobs_db.insert_job(
            conn,
            operation=op.name,
            priority=options.priority,
            error_policy=options.error_policy,
            params=params.model_dump(mode="json"),
            selection=selection.to_json(),
            total=total,
            parent_id=parent_id,
        )
        if selection.ids is not None:
            await jobs_db.insert_job_items(conn, job.id, list(selection.ids))
    await enqueue_slice(services.redis, job.id, job.tenant_id, job.priority)
    await publish_state(services.redis, job)
    return job
