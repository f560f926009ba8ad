"""Submitting an import: stage the uploaded file's rows, then run them like any bulk change.

The file is read once, streamed, when the request is accepted: parsed in a worker thread
chunk by chunk (the next chunk is parsed while the last one is copied) and copied into
`import_rows` in one transaction, so an upload is staged whole or not at all. Whole-file
problems refuse the request then (`UploadError`); a row that cannot be read is staged with
its error. `bulk.submit` then counts the rows, and runs them inline or queues a job that
walks them; the staged rows of an inline run (or of a refused or replayed request) are
removed right after it, a job's when it ends."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import aclosing
from typing import BinaryIO

from bulkops.db import imports as imports_db
from bulkops.db.imports import STAGED_COLUMNS, StagedRecord
from bulkops.db.pool import tenant_transaction
from bulkops.operations.import_columns import ImportColumns
from bulkops.operations.update_products import UNIQUE_IDENTIFIER_KINDS
from bulkops.selection import Selection, StagedRows
from bulkops.services import bulk
from bulkops.uploads import (
    RowReader,
    UploadError,
    UploadFormat,
    chunked,
    file_digest,
    open_upload,
    read_ahead,
)

OPERATION = "importProducts"
CHUNK_ROWS = 10_000


async def import_products(
    services: bulk.Services,
    tenant_id: str,
    file: BinaryIO,
    *,
    filename: str | None,
    options: bulk.BulkOptions,
) -> bulk.InlineResult | bulk.QueuedResult:
    """Stage the file and import it inline or in a job, as its size and `options` decide.
    Raises InputError (UploadError for the file itself, field `upload`); nothing has
    changed then, and nothing stays staged."""
    staged = await stage_upload(services, tenant_id, file, filename=filename)
    try:
        return await bulk.submit(
            services,
            tenant_id,
            operation=OPERATION,
            selection=Selection(staged=staged),
            params={},
            options=options,
        )
    finally:
        # The rows stay only for a job that walks them: not after an inline run, a
        # refusal, or a replayed idempotency key (which answers with an earlier job).
        async with tenant_transaction(services.pool, tenant_id) as conn:
            if not await imports_db.job_walks(conn, staged.upload_id):
                await imports_db.drop_upload(conn, staged.upload_id)


async def stage_upload(
    services: bulk.Services, tenant_id: str, file: BinaryIO, *, filename: str | None
) -> StagedRows:
    """Read the file and stage its rows in one transaction; raises UploadError."""
    digest, reader, columns = await asyncio.to_thread(_open, file, filename)
    upload_id = str(uuid.uuid4())
    unique = _UniqueKinds()
    chunks = _chunks(reader, columns, unique)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        await imports_db.begin_staging(conn, upload_id)
        rows = 0
        async with aclosing(read_ahead(chunks)) as parsed:
            async for chunk in parsed:
                await imports_db.stage_chunk(conn, upload_id, chunk)
                rows += len(chunk)
        if rows == 0:
            raise UploadError("The file has no rows to import.", code="EMPTY_UPLOAD")
        await imports_db.finish_staging(
            conn, upload_id, rows=rows, unique_kinds=sorted(unique.seen)
        )
    return StagedRows(upload_id=upload_id, digest=digest)


def _open(file: BinaryIO, filename: str | None) -> tuple[str, RowReader, ImportColumns]:
    digest = file_digest(file)
    reader = open_upload(file, filename=filename)
    if reader.format is UploadFormat.CSV:
        assert reader.columns is not None
        return digest, reader, ImportColumns.of_header(reader.columns)
    return digest, reader, ImportColumns()


def _chunks(
    reader: RowReader, columns: ImportColumns, unique: _UniqueKinds
) -> Iterator[list[StagedRecord]]:
    return chunked((unique.watch(columns.record(item)) for item in reader), CHUNK_ROWS)


class _UniqueKinds:
    """The unique identifier kinds (GTIN, EAN, UPC) a file's staged rows may name, so that
    staging looks for a value given to two SKUs only among those, and not at all in a file
    that names none (most files: a scan of every staged row's identifiers saved). A kind
    is counted when its quoted name appears anywhere in a row's identifiers, as a value or
    a column too: counting one too many only costs the look."""

    _INDEX = STAGED_COLUMNS.index("identifiers")
    _QUOTED = tuple((kind, json.dumps(kind)) for kind in sorted(UNIQUE_IDENTIFIER_KINDS))

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def watch(self, record: StagedRecord) -> StagedRecord:
        identifiers = record[self._INDEX]
        if identifiers is not None:
            for kind, quoted in self._QUOTED:
                if quoted in identifiers:
                    self.seen.add(kind)
        return record
