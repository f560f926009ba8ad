"""An uploaded import file, staged by the submission before its rows are run like any bulk
change. Whole-file problems refuse the request (`UploadError`, field `upload`); the staged
rows of an inline run are removed right after it, a job's when it ends."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any, BinaryIO

from bulkops.db import imports as imports_db
from bulkops.db.imports import STAGED_COLUMNS, StagedRecord
from bulkops.db.pool import tenant_transaction
from bulkops.operations.import_columns import ImportColumns
from bulkops.operations.update_products import UNIQUE_IDENTIFIER_KINDS
from bulkops.selection import Selection, StagedRows
from bulkops.services.container import Services
from bulkops.uploads import (
    RowReader,
    UploadError,
    UploadFormat,
    chunked,
    file_digest,
    open_upload,
    read_ahead,
)

CHUNK_ROWS = 10_000


async def upload_input(file: BinaryIO, filename: str | None) -> StagedImport:
    """The uploaded file, opened (its digest taken and its header read) but not staged;
    raises UploadError for a file that cannot be read."""
    digest, reader, columns = await asyncio.to_thread(_open, file, filename)
    return StagedImport(digest, reader, columns)


class StagedImport:
    """An uploaded import file as the submission stages it: read once, streamed, parsed
    in a worker thread chunk by chunk (the next chunk is parsed while the last one is
    copied) and copied into `import_rows` in one transaction, so an upload is staged whole
    or not at all. A row that cannot be read is staged with its error."""

    known_rows = None

    def __init__(self, digest: str, reader: RowReader, columns: ImportColumns) -> None:
        self.digest = digest
        self._reader = reader
        self._columns = columns

    async def stage(self, services: Services, tenant_id: str, params: Any) -> Selection:
        upload_id = str(uuid.uuid4())
        unique = _UniqueKinds()
        chunks = _chunks(self._reader, self._columns, unique)
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
        return Selection(staged=StagedRows(upload_id=upload_id, digest=self.digest))

    async def discard(self, services: Services, tenant_id: str, selection: Selection) -> None:
        assert selection.staged is not None
        async with tenant_transaction(services.pool, tenant_id) as conn:
            await imports_db.drop_upload(conn, selection.staged.upload_id)


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
