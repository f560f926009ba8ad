"""Submitting a bulk change: validate, count, then run it inline or queue a job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from pydantic import ValidationError

from bulkops.db import jobs as jobs_db
from bulkops.db import products as products_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError, NotFoundError
from bulkops.models import ItemFailure, JobState, ProductRow
from bulkops.operations import get_operation
from bulkops.operations.base import BatchOutcome, JobAborted, Operation
from bulkops.selection import Selection
from bulkops.services import idempotency
from bulkops.services.files import purge_deleted_files
from bulkops.services.queue import enqueue_slice
from bulkops.storage import LocalStorage, using_storage


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
    """Undo a dry run's batch (its savepoint)."""


class _Undo(Exception):
    """Undo the run's transaction (dry runs, ABORT policy) and carry its result out."""

    def __init__(self, result: InlineResult) -> None:
        super().__init__()
        self.result = result


def field_path(loc: tuple[int | str, ...]) -> list[str]:
    """A pydantic error location as the GraphQL field path (dataset_id -> datasetId)."""
    return [_camel(str(part)) for part in loc]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def parse_params(op: Operation[Any], raw: dict[str, Any]) -> Any:
    try:
        return op.parse_params(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Operations name their own codes with PydanticCustomError("INVALID_PRICE", ...).
        code = first["type"] if first["type"].isupper() else "INVALID_INPUT"
        raise InputError(first["msg"], code=code, field=field_path(first["loc"])) from None


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
    idempotency_ttl: timedelta = timedelta(hours=24),
) -> InlineResult | QueuedResult:
    """Run a bulk change inline or queue it as a job, as its size and `options` decide.

    Raises InputError (with the field) when anything about the request is wrong; nothing
    has changed then. With an idempotency key, a repeat of the same request gets the first
    answer again (for a job: that same job, as it is now)."""
    key = options.idempotency_key
    if key is None:
        return await _submit(services, tenant_id, operation, selection, params, options)
    return await idempotency.run_once(
        services.pool,
        tenant_id,
        key=key,
        operation=operation,
        fingerprint=request_fingerprint(
            operation, {"selection": selection.fingerprint()}, params, options
        ),
        ttl=idempotency_ttl,
        run=lambda: _submit(services, tenant_id, operation, selection, params, options),
        encode=encode_result,
        replay=lambda stored: replay_result(services, tenant_id, stored),
    )


def request_fingerprint(
    operation: str, items: dict[str, Any], params: dict[str, Any], options: BulkOptions
) -> bytes:
    """What makes two requests under one idempotency key the same request: the operation,
    what it applies to (`items`), its parameters and its options but the key."""
    return idempotency.request_hash(
        {
            "operation": operation,
            **items,
            "params": params,
            "options": {**asdict(options), "idempotency_key": None},
        }
    )


def encode_result(
    result: InlineResult | QueuedResult,
    *,
    kind: str = "inline",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A result as an idempotency key stores it; an operation that answers with more than
    the summary (matchProducts' results) names its own `kind` and adds its `extra` fields,
    which its own replay reads from the stored answer beside `replay_result`'s."""
    if isinstance(result, QueuedResult):
        return {"kind": "job", "job_id": result.job.id}
    outcome = result.outcome
    return {
        "kind": kind,
        "operation": result.operation,
        "matched": result.matched,
        "succeeded": outcome.succeeded,
        "failed": outcome.failed,
        "skipped": outcome.skipped,
        "errors": [e.to_json() for e in outcome.errors],
        "counters": outcome.counters,
        "sample_ids": [p.id for p in result.sample],
        "dry_run": result.dry_run,
        "aborted": result.aborted,
        **(extra or {}),
    }


async def replay_result(
    services: Services, tenant_id: str, stored: dict[str, Any]
) -> InlineResult | QueuedResult:
    """The answer `encode_result` stored, again: a refusal is raised again, a job is read
    as it is now, a summary is rebuilt (with its sample's products as they are now)."""
    if stored["kind"] == "rejected":
        raise InputError(stored["message"], code=stored["code"], field=stored["field"])
    async with tenant_transaction(services.pool, tenant_id) as conn:
        if stored["kind"] == "job":
            job = await jobs_db.get_job(conn, stored["job_id"])
            if job is None:
                raise NotFoundError(
                    "The job this idempotency key created no longer exists.",
                    field=["options", "idempotencyKey"],
                )
            return QueuedResult(job)
        # The stored ids are of the sample's products, whatever the operation's items are.
        sample = await products_db.products_by_ids(conn, stored["sample_ids"])
    outcome = BatchOutcome(
        succeeded=stored["succeeded"],
        failed=stored["failed"],
        skipped=stored["skipped"],
        errors=[ItemFailure.from_json(e) for e in stored["errors"]],
        counters=stored["counters"],
    )
    return InlineResult(
        stored["operation"],
        stored["matched"],
        outcome,
        stored["dry_run"],
        sample,
        stored["aborted"],
    )


def runs_inline(op: Operation[Any], matched: int, options: BulkOptions) -> bool:
    """Whether `matched` items run inline under `options` (INLINE_LIMIT_EXCEEDED when
    INLINE asks for more than the operation runs inline)."""
    limits = op.thresholds
    if options.mode == "INLINE" and matched > limits.inline_limit and not options.dry_run:
        raise InputError(
            f"{matched} items is more than the {limits.inline_limit} {op.name} runs inline; "
            "use mode BACKGROUND.",
            code="INLINE_LIMIT_EXCEEDED",
            field=["options", "mode"],
        )
    return (
        options.dry_run
        or options.mode == "INLINE"
        or (options.mode == "AUTO" and matched <= limits.inline_threshold)
    )


async def _submit(
    services: Services,
    tenant_id: str,
    operation: str,
    selection: Selection,
    params: dict[str, Any],
    options: BulkOptions,
) -> InlineResult | QueuedResult:
    """Check, count, and run inline or write the job: one transaction, so a request costs
    one connection and one commit, and what was counted is what runs."""
    op = get_operation(operation)
    parsed = parse_params(op, params)
    try:
        async with tenant_transaction(services.pool, tenant_id) as conn:
            await op.check(conn, parsed)
            matched = await op.count(conn, selection)
            if not runs_inline(op, matched, options):
                job = await insert_job(conn, op, parsed, selection, total=matched, options=options)
                queued = QueuedResult(job)
            else:
                with using_storage(services.storage):
                    result = await _apply_inline(conn, op, parsed, selection, matched, options)
                files = await has_file_deletions(conn)
                queued = None
    except _Undo as undone:
        return undone.result
    except JobAborted as exc:
        raise InputError(exc.message, code=exc.code) from None
    if queued is not None:
        await announce_job(services, queued.job)
        return queued
    if files:
        await purge_deleted_files(services.pool, services.storage, tenant_id)
    return result


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
    try:
        async with tenant_transaction(services.pool, tenant_id) as conn:
            result = await _apply_inline(conn, op, params, selection, matched, options)
            files = await has_file_deletions(conn)
    except _Undo as undone:
        return undone.result
    except JobAborted as exc:
        raise InputError(exc.message, code=exc.code) from None
    if files:
        await purge_deleted_files(services.pool, services.storage, tenant_id)
    return result


async def has_file_deletions(conn: asyncpg.Connection) -> bool:
    """Whether stored files of the tenant wait to be removed (the run deleted some)."""
    pending: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM file_deletions WHERE tenant_id = current_tenant_id())"
    )
    return pending


async def _apply_inline(
    conn: asyncpg.Connection,
    op: Operation[Any],
    params: Any,
    selection: Selection,
    matched: int,
    options: BulkOptions,
) -> InlineResult:
    """Every batch of an inline run, in the caller's transaction. A dry run, or a run
    aborted by its error policy, raises _Undo carrying its result: the caller's
    transaction is undone."""
    total = BatchOutcome()
    async for ids in selection_batches(conn, op, selection, op.thresholds.batch_size):
        if options.dry_run:
            outcome = await _dry_batch(conn, op, params, ids)
        else:
            outcome = await op.apply_batch(conn, params, ids)
        total.add(outcome)
        if outcome.failed and options.error_policy == "ABORT":
            # Nothing is applied: every item counts as not done.
            total.succeeded = 0
            total.skipped = 0
            total.counters = {key: 0 for key in total.counters}
            raise _Undo(InlineResult(op.name, matched, total, options.dry_run, [], True))
    if options.dry_run:
        # Each batch was undone, so even deleted products can be shown.
        sample = await op.sample(conn, total.changed_ids)
        raise _Undo(InlineResult(op.name, matched, total, True, sample))
    return InlineResult(op.name, matched, total, False, [])


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
        job = await insert_job(
            conn, op, params, selection, total=total, options=options, parent_id=parent_id
        )
    await announce_job(services, job)
    return job


async def insert_job(
    conn: asyncpg.Connection,
    op: Operation[Any],
    params: Any,
    selection: Selection,
    *,
    total: int,
    options: BulkOptions,
    parent_id: str | None = None,
) -> JobState:
    """The job row and its explicit ids, in the caller's transaction."""
    return await jobs_db.insert_job(
        conn,
        operation=op.name,
        priority=options.priority,
        error_policy=options.error_policy,
        params=params.model_dump(mode="json"),
        selection=selection.to_json(),
        total=total,
        parent_id=parent_id,
        idempotency_key=options.idempotency_key,
        item_ids=selection.ids,
    )


async def announce_job(services: Services, job: JobState) -> None:
    """Once the job is committed: its first slice on the queue and its state to
    subscribers, in one round trip to Redis."""
    await enqueue_slice(services.redis, job.id, job.tenant_id, job.priority, announce=job)
