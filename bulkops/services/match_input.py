"""The input rows of matchProducts, from the `rows` argument or an uploaded CSV or JSONL
file (read by `bulkops.uploads`), as staged rows, chunk by chunk."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from bulkops.db.match_inputs import StagedRow
from bulkops.errors import InputError
from bulkops.operations.match_products import MATCH_FIELDS, stage_row
from bulkops.uploads import (
    Row,
    RowError,
    RowReader,
    UploadError,
    UploadFormat,
    chunked,
    file_digest,
    open_upload,
    read_ahead,
)

CHUNK_ROWS = 5000
MAX_ROW_NUMBER = 2**31 - 1
# A column (or JSONL key) `identifier:MPN` holds the row's identifier of kind MPN, as
# importProducts reads it.
IDENTIFIER_PREFIX = "identifier:"


@dataclass
class MatchInput:
    """Rows to stage: `chunks()` yields them in row order, once. `digest` says which
    input it is (for idempotency keys); `columns` are the input's columns as given, for
    the download (a JSONL file's keys as they first appear: complete once it is read)."""

    digest: str
    columns: list[str]
    source: Iterator[list[StagedRow]]
    rows: int | None = None  # known up front for the rows argument
    # A file is read and parsed in a thread, so that the event loop keeps serving.
    threaded: bool = False

    async def chunks(self) -> AsyncIterator[list[StagedRow]]:
        if self.threaded:
            async with aclosing(read_ahead(self.source)) as parsed:
                async for chunk in parsed:
                    yield chunk
            return
        for chunk in self.source:
            yield chunk


def inline_input(rows: Sequence[Mapping[str, Any]], *, limit: int) -> MatchInput:
    """The `rows` argument. A row without a number gets its position (from 1); numbers
    must be positive and unique."""
    if not rows:
        raise InputError("Give at least one row.", code="EMPTY_ROWS", field=["rows"])
    if len(rows) > limit:
        raise InputError(
            f"{len(rows)} rows is more than the {limit} the rows argument takes; "
            "upload them as a CSV or JSONL file instead.",
            code="TOO_MANY_ROWS",
            field=["rows"],
        )
    staged: dict[int, StagedRow] = {}
    for index, raw in enumerate(rows):
        number = raw.get("row")
        if number is None:
            number = index + 1
        elif not 1 <= number <= MAX_ROW_NUMBER:
            raise InputError(
                f"Row number {number} is not a positive number.",
                code="INVALID_ROW",
                field=["rows", str(index), "row"],
            )
        if number in staged:
            raise InputError(
                f"Row number {number} is given twice.",
                code="DUPLICATE_ROW",
                field=["rows", str(index), "row"],
            )
        fields = {name: raw.get(name) for name in MATCH_FIELDS}
        staged[number] = stage_row(number, raw, fields)
    ordered = [staged[n] for n in sorted(staged)]
    digest = hashlib.sha256()
    for row in ordered:
        digest.update(json.dumps(asdict(row), sort_keys=True).encode())
    chunks = (ordered[i : i + CHUNK_ROWS] for i in range(0, len(ordered), CHUNK_ROWS))
    return MatchInput(digest.hexdigest(), list(MATCH_FIELDS), chunks, rows=len(ordered))


async def upload_input(file: BinaryIO, filename: str | None) -> MatchInput:
    """An uploaded file, checked when opened (UploadError, on the field `upload`: not CSV
    or JSONL, empty, a bad header) and then read as it is staged."""
    return await asyncio.to_thread(_open, file, filename)


def _open(file: BinaryIO, filename: str | None) -> MatchInput:
    digest = file_digest(file)
    reader = open_upload(file, filename=filename)
    columns = list(reader.columns or ())
    if reader.format is UploadFormat.CSV and not any(_is_match_column(c) for c in columns):
        raise UploadError(
            "The header names none of the columns rows are matched on: barcode, sku, name, "
            "identifiers or identifier:KIND.",
            code="INVALID_HEADER",
        )
    return MatchInput(digest, columns, _staged_chunks(reader, columns), threaded=True)


def _is_match_column(name: str) -> bool:
    key = name.strip().lower()
    return key in MATCH_FIELDS or key.startswith(IDENTIFIER_PREFIX)


def _staged_chunks(reader: RowReader, columns: list[str]) -> Iterator[list[StagedRow]]:
    return chunked(_staged_rows(reader, columns), CHUNK_ROWS)


def _staged_rows(reader: RowReader, columns: list[str]) -> Iterator[StagedRow]:
    # A JSONL file's columns are its keys, in the order they first appear.
    seen = set(columns)
    for item in reader:
        if isinstance(item, RowError):
            where = f" (column {item.column})" if item.column else ""
            message = f"Row {item.row}{where} {item.reason}."
            yield StagedRow(item.row, (), (), None, None, None, {}, item.code, message)
        else:
            if reader.format is UploadFormat.JSONL:
                columns.extend(k for k in item.values if k not in seen)
                seen.update(item.values)
            yield _staged(item)


def _staged(item: Row) -> StagedRow:
    values: dict[str, Any] = {}
    extra: list[tuple[str, str | None]] = []
    for name, value in item.values.items():
        key = name.strip().lower()
        if key in MATCH_FIELDS:
            values[key] = value
        elif key.startswith(IDENTIFIER_PREFIX):
            extra.append((name.strip()[len(IDENTIFIER_PREFIX) :], value))
    return stage_row(item.number, values, dict(item.values), extra_identifiers=extra)
