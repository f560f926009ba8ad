"""Submitting exportProducts, and the signed download links of its files.

The file and its row are made (the CSV header written) when the request is accepted,
before the inline run or the job: an empty selection is still a file, and a job's batches
only ever append. Like matchProducts, this service holds the idempotency key itself, since
each request names a new file."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bulkops.db.export import ExportFormat, csv_header
from bulkops.db.export_files import ExportFileRow, get_files, insert_file
from bulkops.db.pool import tenant_transaction
from bulkops.operations import get_operation
from bulkops.operations.base import SAMPLE_SIZE, BatchOutcome
from bulkops.selection import ProductFilter, Selection
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
    runs_inline,
)
from bulkops.services.signing import signature, valid_signature
from bulkops.storage import using_storage

OPERATION = "exportProducts"
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
}


@dataclass(frozen=True)
class ExportInlineResult:
    result: InlineResult
    # None for a dry run (no file is written).
    file: ExportFileRow | None


@dataclass(frozen=True)
class FileLink:
    url: str
    expires_at: datetime


def storage_key(tenant_id: str, file_id: str, fmt: str) -> str:
    return f"exports/{tenant_id}/{file_id}.{fmt}"


def download_path(tenant_id: str, file_id: str, fmt: str) -> str:
    return f"/exports/{tenant_id}/{file_id}.{fmt}"


def link(key: bytes, base_url: str, file: ExportFileRow) -> FileLink:
    """The file's signed download link; it works until the file expires."""
    expires = int(file.expires_at.timestamp())
    path = download_path(file.tenant_id, file.id, file.format)
    sig = signature(key, path=path, tenant_id=file.tenant_id, expires=expires)
    return FileLink(
        f"{base_url.rstrip('/')}{path}?expires={expires}&signature={sig}",
        datetime.fromtimestamp(expires, UTC),
    )


def check_link(key: bytes, *, path: str, tenant_id: str, expires: str, given: str) -> str:
    """'ok', 'forbidden' (not a link the service made) or 'expired'."""
    if not expires.isdigit() or len(expires) > 12:
        return "forbidden"
    when = int(expires)
    if not valid_signature(key, given, path=path, tenant_id=tenant_id, expires=when):
        return "forbidden"
    if when <= datetime.now(UTC).timestamp():
        return "expired"
    return "ok"


async def file_row(services: Services, tenant_id: str, file_id: str) -> ExportFileRow | None:
    async with tenant_transaction(services.pool, tenant_id) as conn:
        found = await get_files(conn, [file_id])
    return found[0] if found else None


async def submit_export(
    services: Services,
    tenant_id: str,
    *,
    flt: ProductFilter,
    fmt: ExportFormat,
    options: BulkOptions,
    link_seconds: float,
    idempotency_ttl: timedelta = timedelta(hours=24),
) -> ExportInlineResult | QueuedResult:
    """Export inline or queue a job, as the selection's size and `options` decide.
    Raises InputError (with the field) when the request is wrong; no file is made then."""
    key = options.idempotency_key
    if key is None:
        return await _submit(services, tenant_id, flt, fmt, options, link_seconds)
    return await idempotency.run_once(
        services.pool,
        tenant_id,
        key=key,
        operation=OPERATION,
        fingerprint=request_fingerprint(
            OPERATION, {"filter": flt.model_dump(mode="json")}, {"format": fmt}, options
        ),
        ttl=idempotency_ttl,
        run=lambda: _submit(services, tenant_id, flt, fmt, options, link_seconds),
        encode=_encode,
        replay=lambda stored: _replay(services, tenant_id, stored),
    )


async def _submit(
    services: Services,
    tenant_id: str,
    flt: ProductFilter,
    fmt: ExportFormat,
    options: BulkOptions,
    link_seconds: float,
) -> ExportInlineResult | QueuedResult:
    op = get_operation(OPERATION)
    selection = Selection(filter=flt)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        matched = await op.count(conn, selection)
        if options.dry_run:
            ids = await op.filter_batch(conn, selection, after=0, limit=SAMPLE_SIZE)
            sample = await op.sample(conn, ids)
            dry = InlineResult(OPERATION, matched, BatchOutcome(succeeded=matched), True, sample)
            return ExportInlineResult(dry, None)
    inline = runs_inline(op, matched, options)
    file_id = str(uuid.uuid4())
    params = parse_params(op, {"format": fmt, "file_id": file_id, "link_seconds": link_seconds})
    key = storage_key(tenant_id, file_id, fmt)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        header = csv_header() if fmt == "csv" else b""
        await insert_file(
            conn, file_id, storage_key=key, fmt=fmt, size=len(header), link_seconds=link_seconds
        )
        services.storage.write(key, header)
    if not inline:
        job = await queue_job(
            services, tenant_id, op, params, selection, total=matched, options=options
        )
        return QueuedResult(job)
    with using_storage(services.storage):
        result = await run_inline(
            services, tenant_id, op, params, selection, matched=matched, options=options
        )
    return ExportInlineResult(result, await file_row(services, tenant_id, file_id))


def _encode(result: ExportInlineResult | QueuedResult) -> dict[str, Any]:
    if isinstance(result, QueuedResult):
        return encode_result(result)
    file_id = result.file.id if result.file is not None else None
    return encode_result(result.result, kind="export", extra={"file_id": file_id})


async def _replay(
    services: Services, tenant_id: str, stored: dict[str, Any]
) -> ExportInlineResult | QueuedResult:
    result = await replay_result(services, tenant_id, stored)
    if isinstance(result, QueuedResult):
        return result
    file_id: str | None = stored.get("file_id")
    file = await file_row(services, tenant_id, file_id) if file_id else None
    return ExportInlineResult(result, file)
