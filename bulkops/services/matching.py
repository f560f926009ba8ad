"""Submitting a matchProducts request and reading its results.

The input rows are staged when the request is accepted, inline rows as well as uploads, so
an inline run and a job walk the same staged rows with the same batch step. Staging happens
before the run, so this service (rather than `bulk.submit`) holds the idempotency key: it
fingerprints the rows themselves, and replays an inline answer with its per-row results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from bulkops.db import jobs as jobs_db
from bulkops.db import matching as matching_db
from bulkops.db import products as products_db
from bulkops.db.matching import ResultRow
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError
from bulkops.models import ProductRow
from bulkops.operations import get_operation
from bulkops.selection import Selection, StagedRows
from bulkops.services import idempotency
from bulkops.services.bulk import (
    BulkOptions,
    InlineResult,
    QueuedResult,
    Services,
    encode_result,
    parse_params,
    queue_job,
    replay_result,
    request_fingerprint,
    run_inline,
)
from bulkops.services.match_input import MatchInput

OPERATION = "matchProducts"
MAX_ROW_NUMBER = 2**31 - 1


@dataclass(frozen=True)
class MatchResults:
    """Stored outcomes and the products they name (matched and candidates), by id."""

    rows: list[ResultRow]
    products: dict[int, ProductRow]


@dataclass(frozen=True)
class MatchInlineResult:
    result: InlineResult
    results: MatchResults
    # The staged input the results are stored under; None when nothing was kept.
    input_id: str | None


async def submit_match(
    services: Services,
    tenant_id: str,
    *,
    source: MatchInput,
    params: dict[str, Any],
    options: BulkOptions,
    idempotency_ttl: timedelta = timedelta(hours=24),
) -> MatchInlineResult | QueuedResult:
    """Stage the rows and match them inline, or queue a job, as their number and
    `options` decide. Raises InputError (with the field) when anything is wrong; nothing
    is staged then."""
    key = options.idempotency_key
    if key is None:
        return await _submit(services, tenant_id, source, params, options)
    return await idempotency.run_once(
        services.pool,
        tenant_id,
        key=key,
        operation=OPERATION,
        fingerprint=request_fingerprint(OPERATION, {"rows": source.digest}, params, options),
        ttl=idempotency_ttl,
        run=lambda: _submit(services, tenant_id, source, params, options),
        encode=_encode,
        replay=lambda stored: _replay(services, tenant_id, stored),
    )


async def _submit(
    services: Services,
    tenant_id: str,
    source: MatchInput,
    params: dict[str, Any],
    options: BulkOptions,
) -> MatchInlineResult | QueuedResult:
    op = get_operation(OPERATION)
    input_id = str(uuid.uuid4())
    parsed = parse_params(op, {**params, "input_id": input_id})
    limits = op.thresholds

    def check_inline_limit(total: int) -> None:
        if options.mode == "INLINE" and total > limits.inline_limit and not options.dry_run:
            raise InputError(
                f"{total} rows is more than the {limits.inline_limit} {OPERATION} matches "
                "inline; use mode BACKGROUND.",
                code="INLINE_LIMIT_EXCEEDED",
                field=["options", "mode"],
            )

    if source.rows is not None:
        check_inline_limit(source.rows)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        await op.check(conn, parsed)
        await matching_db.insert_input(conn, input_id, columns=source.columns, row_count=0)
        total = 0
        async for chunk in source.chunks():
            await matching_db.insert_rows(conn, input_id, chunk)
            total += len(chunk)
        # A JSONL file's columns are known once it has been read.
        await matching_db.set_input_size(conn, input_id, columns=source.columns, row_count=total)
    try:
        if total == 0:
            raise InputError("The file has no rows.", code="EMPTY_UPLOAD", field=["upload"])
        check_inline_limit(total)
    except InputError:
        await _forget(services, tenant_id, input_id)
        raise
    selection = Selection(staged=StagedRows(upload_id=input_id, digest=source.digest))
    inline = (
        options.dry_run
        or options.mode == "INLINE"
        or (options.mode == "AUTO" and total <= limits.inline_threshold)
    )
    try:
        if not inline:
            job = await queue_job(
                services, tenant_id, op, parsed, selection, total=total, options=options
            )
            return QueuedResult(job)
        result = await run_inline(
            services, tenant_id, op, parsed, selection, matched=total, options=options
        )
    except InputError:
        await _forget(services, tenant_id, input_id)
        raise
    if result.dry_run or result.aborted:
        # Nothing was kept (each batch was rolled back): the staged rows are of no use.
        await _forget(services, tenant_id, input_id)
        return MatchInlineResult(result, MatchResults([], {}), None)
    return MatchInlineResult(result, await read_results(services, tenant_id, input_id), input_id)


async def _forget(services: Services, tenant_id: str, input_id: str) -> None:
    async with tenant_transaction(services.pool, tenant_id) as conn:
        await matching_db.delete_input(conn, input_id)


def _encode(result: MatchInlineResult | QueuedResult) -> dict[str, Any]:
    """A summary is stored with the staged input its per-row results are kept under."""
    if isinstance(result, QueuedResult):
        return encode_result(result)
    return encode_result(result.result, kind="match", extra={"input_id": result.input_id})


async def _replay(
    services: Services, tenant_id: str, stored: dict[str, Any]
) -> MatchInlineResult | QueuedResult:
    # Answers stored before "match" answers named their operation lack it.
    replayed = await replay_result(services, tenant_id, {"operation": OPERATION, **stored})
    if isinstance(replayed, QueuedResult):
        return replayed
    input_id: str | None = stored["input_id"]
    results = (
        await read_results(services, tenant_id, input_id) if input_id else MatchResults([], {})
    )
    return MatchInlineResult(replayed, results, input_id)


async def read_results(
    services: Services,
    tenant_id: str,
    input_id: str,
    *,
    after: int = 0,
    limit: int | None = None,
    matched: bool | None = None,
    matched_by: str | None = None,
) -> MatchResults:
    """Stored outcomes past row `after` in row order (all of them without a `limit`), with
    their products."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        rows = await matching_db.results_page(
            conn,
            input_id,
            after=after,
            limit=limit if limit is not None else MAX_ROW_NUMBER,
            matched=matched,
            matched_by=matched_by,
        )
        return MatchResults(rows, await _products_of(conn, rows))


async def _products_of(
    conn: asyncpg.Connection, rows: Sequence[ResultRow]
) -> dict[int, ProductRow]:
    ids = {r.product_id for r in rows if r.product_id is not None}
    ids.update(i for r in rows for i, _ in r.candidates)
    return {p.id: p for p in await products_db.products_by_ids(conn, sorted(ids))}


async def match_input_of_job(services: Services, tenant_id: str, job_id: str) -> str | None:
    """The staged input of a matchProducts job; None for another tenant's job or another
    operation's."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        job = await jobs_db.get_job(conn, job_id)
    if job is None or job.operation != OPERATION:
        return None
    input_id: str | None = job.params.get("input_id")
    return input_id


async def count_results(
    services: Services,
    tenant_id: str,
    input_id: str,
    *,
    matched: bool | None = None,
    matched_by: str | None = None,
) -> int:
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await matching_db.count_results(
            conn, input_id, matched=matched, matched_by=matched_by
        )


async def input_columns(services: Services, tenant_id: str, input_id: str) -> list[str] | None:
    """The columns the staged input came with; None when it is gone."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await matching_db.input_columns(conn, input_id)
