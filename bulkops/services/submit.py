"""The one submission path of every bulk mutation: validate, stage an upload, count, then
run inline, dry-run, or queue a job, under an idempotency key when one is given.

`submit(services, tenant, operation=..., selection=..., params=..., options=...)` serves
them all. What differs between operations is declared on the operation (how it counts and
walks its items, `bind` for the parameters a run needs, `prepare` for what it makes before
running); an uploaded input is a `StagedInput` whose rows are staged first."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from bulkops import metrics
from bulkops.db import jobs as jobs_db
from bulkops.db import products as products_db
from bulkops.db.pool import tenant_transaction
from bulkops.db.storage import has_file_deletions
from bulkops.domain import ExecutionMode
from bulkops.errors import InputError, NotFoundError
from bulkops.models import ItemFailure, JobState
from bulkops.operations.base import BatchContext, BatchOutcome, JobAborted, Operation
from bulkops.operations.calling import CallingOperation
from bulkops.selection import Selection
from bulkops.services import calls, idempotency
from bulkops.services.chains import CAPTURE
from bulkops.services.container import Services
from bulkops.services.files import purge_deleted_files
from bulkops.services.inline import InlineResult, RunUndone, apply_inline
from bulkops.services.jobs import log_fields
from bulkops.services.options import BulkOptions
from bulkops.services.queue import enqueue_slice

__all__ = ["BulkOptions", "InlineResult", "QueuedResult", "StagedInput", "submit"]

log = logging.getLogger(__name__)

# Set while a schedule checks its stored arguments through the mutation's own resolver:
# the request is checked and counted (a dry run's `matched`), nothing runs.
COUNT_ONLY: ContextVar[bool] = ContextVar("bulkops_count_only", default=False)


@dataclass(frozen=True)
class QueuedResult:
    job: JobState


class StagedInput(Protocol):
    """Input rows that are staged in the database before the run walks them (an uploaded
    file, matchProducts' rows)."""

    @property
    def digest(self) -> str:
        """What identifies the input for an idempotency key (the file's digest)."""

    @property
    def known_rows(self) -> int | None:
        """How many rows, when known before staging (rows given inline)."""

    async def stage(self, services: Services, tenant_id: str, params: Any) -> Selection:
        """Stage the rows in one transaction; the selection that walks them."""

    async def discard(self, services: Services, tenant_id: str, selection: Selection) -> None:
        """Remove the staged rows (a refused, dry or aborted request)."""


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


def check_inline_limit(op: Operation[Any], count: int, options: BulkOptions) -> None:
    """INLINE_LIMIT_EXCEEDED when INLINE asks for more than the operation runs inline."""
    limit = op.thresholds.inline_limit
    if options.mode == ExecutionMode.INLINE and count > limit and not options.dry_run:
        raise InputError(
            f"{count} items is more than the {limit} {op.name} runs inline; use mode BACKGROUND.",
            code="INLINE_LIMIT_EXCEEDED",
            field=["options", "mode"],
        )


def runs_inline(op: Operation[Any], matched: int, options: BulkOptions) -> bool:
    """Whether `matched` items run inline under `options` (refused when INLINE asks for
    more than the operation runs inline). A chain's first step is always a job: the steps
    after it start when it ends."""
    check_inline_limit(op, matched, options)
    if options.then and not options.dry_run:
        return False
    return (
        options.dry_run
        or options.mode == ExecutionMode.INLINE
        or (options.mode == ExecutionMode.AUTO and matched <= op.thresholds.inline_threshold)
    )


async def submit(
    services: Services,
    tenant_id: str,
    *,
    operation: str,
    selection: Selection | StagedInput,
    params: dict[str, Any],
    options: BulkOptions,
    created_by: str | None = None,
) -> InlineResult | QueuedResult:
    """Run a bulk change inline or queue it as a job, as its size and `options` decide;
    a job records `created_by` (the caller's subject).

    Raises InputError (with the field) when anything about the request is wrong; nothing
    has changed then and nothing stays staged. With an idempotency key, a repeat of the
    same request gets the first answer again (for a job: that same job, as it is now)."""
    op = services.operations[operation]
    key = options.idempotency_key
    if key is None:
        return await _submit(services, tenant_id, op, selection, params, options, created_by)
    items = (
        {"selection": selection.fingerprint()}
        if isinstance(selection, Selection)
        else {"staged": selection.digest}
    )
    return await idempotency.run_once(
        services.pool,
        tenant_id,
        key=key,
        operation=operation,
        fingerprint=request_fingerprint(operation, items, params, options),
        ttl=services.idempotency_ttl,
        run=lambda: _submit(services, tenant_id, op, selection, params, options, created_by),
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


async def _submit(
    services: Services,
    tenant_id: str,
    op: Operation[Any],
    source: Selection | StagedInput,
    params: dict[str, Any],
    options: BulkOptions,
    created_by: str | None,
) -> InlineResult | QueuedResult:
    if isinstance(op, CallingOperation):
        # An operation whose provider is not set up is refused before anything.
        op.check_configured(services.settings)
    if isinstance(source, Selection):
        return await _run(services, tenant_id, op, source, params, options, created_by)
    if CAPTURE.get() is not None:
        raise InputError(
            f"{op.name} takes rows or an upload, so it can only be a chain's first step.",
            code="NOT_CHAINABLE",
        )
    # Parameters bound to the staged input are checked once it is staged (a refusal then
    # discards it).
    if source.known_rows is not None:
        check_inline_limit(op, source.known_rows, options)
    selection = await source.stage(services, tenant_id, params)
    try:
        result = await _run(services, tenant_id, op, selection, params, options, created_by)
    except BaseException:
        await source.discard(services, tenant_id, selection)
        raise
    if isinstance(result, InlineResult) and (result.dry_run or result.aborted):
        # Nothing was kept (the run was rolled back): the staged rows are of no use.
        await source.discard(services, tenant_id, selection)
    return result


async def _run(
    services: Services,
    tenant_id: str,
    op: Operation[Any],
    selection: Selection,
    raw: dict[str, Any],
    options: BulkOptions,
    created_by: str | None,
) -> InlineResult | QueuedResult:
    """Check, count, and run inline or write the job: one transaction, so a request costs
    one connection and one commit, and what was counted is what runs. A calling operation
    runs inline after that transaction, since its calls must not hold one open
    (`bulkops.services.calls`)."""
    params = parse_params(op, op.bind(raw, selection))
    calling = op if isinstance(op, CallingOperation) else None
    files = False
    result: InlineResult | None = None
    try:
        async with tenant_transaction(services.pool, tenant_id) as conn:
            ctx = BatchContext(conn=conn, storage=services.storage, tenant_id=tenant_id)
            await op.check(conn, params)
            capture = CAPTURE.get()
            if capture is not None:
                if capture.check_selection:
                    await op.count(conn, selection)
                capture.operation, capture.params, capture.selection = op.name, raw, selection
                capture.priority, capture.error_policy = options.priority, options.error_policy
                raise RunUndone(InlineResult(op.name, 0, BatchOutcome(), True, []))
            matched = await op.count(conn, selection)
            if COUNT_ONLY.get():
                raise RunUndone(InlineResult(op.name, matched, BatchOutcome(), True, []))
            inline = runs_inline(op, matched, options)
            if not options.dry_run:
                await op.prepare(ctx, params)
            if not inline:
                job = await insert_job(
                    conn,
                    op,
                    params,
                    selection,
                    total=matched,
                    options=options,
                    created_by=created_by,
                )
            elif calling is not None:
                if options.dry_run:
                    result = await calls.dry_run(ctx, calling, params, selection, matched=matched)
            else:
                result = await apply_inline(
                    ctx, op, params, selection, matched=matched, options=options
                )
                files = op.deletes_files and await has_file_deletions(conn)
    except RunUndone as undone:
        _count_inline(undone.result)
        return undone.result
    except JobAborted as exc:
        raise InputError(exc.message, code=exc.code) from None
    if not inline:
        await announce_job(services, job)
        return QueuedResult(job)
    if result is None:
        assert calling is not None
        try:
            result = await calls.run_inline(
                services, tenant_id, calling, params, selection, matched=matched, options=options
            )
        except JobAborted as exc:
            raise InputError(exc.message, code=exc.code) from None
    _count_inline(result)
    if files:
        await purge_deleted_files(services.pool, services.storage, tenant_id)
    return result


def _count_inline(result: InlineResult) -> None:
    """An inline run's items, as a job's are counted; a dry run did nothing."""
    if not result.dry_run:
        outcome = result.outcome
        metrics.count_items(
            result.operation,
            succeeded=outcome.succeeded,
            failed=outcome.failed,
            skipped=outcome.skipped,
        )


def encode_result(result: InlineResult | QueuedResult) -> dict[str, Any]:
    """A result as an idempotency key stores it."""
    if isinstance(result, QueuedResult):
        return {"kind": "job", "job_id": result.job.id}
    outcome = result.outcome
    return {
        "kind": "inline",
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
        "params": result.params,
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
        stored.get("params", {}),
    )


async def insert_job(
    conn: Any,
    op: Operation[Any],
    params: Any,
    selection: Selection,
    *,
    total: int,
    options: BulkOptions,
    parent_id: str | None = None,
    created_by: str | None = None,
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
        created_by=created_by,
        chain=[step.to_json() for step in options.then],
    )


async def announce_job(services: Services, job: JobState) -> None:
    """Once the job is committed: its first slice on the queue and its state to
    subscribers, in one round trip to Redis."""
    await enqueue_slice(services.redis, job.id, job.tenant_id, job.priority, announce=job)
    log.info("job queued: %d items, %s priority", job.total, job.priority, extra=log_fields(job))
