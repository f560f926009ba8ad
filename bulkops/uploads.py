"""Uploaded CSV and JSONL files read as rows, streamed: a file is never whole in memory.

(Over 350 lines on purpose: one reader, its two formats and their per-row errors share
the line handling, and read best together, with the rules of the JSON a row may hold.)

    reader = open_upload(upload.file, filename=upload.filename)
    reader.format     # UploadFormat.CSV or UploadFormat.JSONL
    reader.columns    # the CSV header, as written (None for JSONL)
    for item in reader:
        if isinstance(item, RowError):
            ...       # item.row, item.column, item.code, item.reason
        else:
            ...       # item.number, item.values: {"sku": "A-1", "price": "12.90", ...}

What a file must be is checked when it is opened (`UploadError`, a whole-request error on
the field `upload`): a known format, not empty, a CSV header with unique, non-blank names.
What is wrong with one row is a `RowError` in its place, and reading goes on with the next
row: a broken quote (a quoted field not closed, or a quote inside a field that is not
quoted), a wrong number of fields, bytes that are not UTF-8 (or a NUL, which PostgreSQL
cannot store), a line over `max_line_bytes`, a JSONL line that is not a JSON object (as
`load_json` reads it), a CSV field nesting brackets deeper than JSON may (`MAX_JSON_DEPTH`:
a field may be parsed as JSON later). A row error's `reason` reads after a row and
column, e.g. "is not valid UTF-8".

A row's number is the line of the file it starts on, from 1, blank lines counted: in a CSV
the header is line 1, so the first data row is 2, as a spreadsheet numbers it. Values are
text as written (not trimmed): a CSV field as it is (empty string for an empty field); a
JSONL value null as None, a string as it is, a number or boolean as its JSON text, an
object or array as compact JSON text. Lines of only whitespace, and CSV rows whose fields
are all empty (spreadsheets write those), are skipped. A UTF-8 byte order mark is dropped.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import math
import re
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import suppress
from enum import StrEnum
from pathlib import PurePath
from typing import Any, BinaryIO, NamedTuple, TypeVar

from bulkops.errors import InputError

# At most this many bytes a line (a CSV row, multi-line quoted fields included). As large
# as the csv module's own default limit on one field, so that a field can never hit that.
MAX_LINE_BYTES = 128 * 1024
_HEAD_BYTES = 4096
_BOM = b"\xef\xbb\xbf"
# Stands in for a NUL character, which the csv module refuses to read: undecodable bytes
# become U+DC80..U+DCFF ("surrogateescape"), so U+DC00 cannot come from the file itself.
_NUL = "\udc00"
_DIGEST_BLOCK = 1024 * 1024
# Arrays and objects within each other, at most. Parsers and encoders of JSON recurse once a
# level (Python's json, the asyncpg codec, PostgreSQL's jsonb), and a line of 128 KiB could
# otherwise nest 65,536 deep; real attributes and identifiers nest a few levels.
MAX_JSON_DEPTH = 64
# A JSON string (closed or not, so that one match never rescans the text) or a bracket.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)
# A CSV record as RFC 4180 has it: each field quoted (quotes doubled inside), or without
# any quote.
_CSV_FIELD = r'(?:"(?:[^"]++|"")*+"|[^,"\r\n]*+)'
_CSV_RECORD = re.compile(rf"{_CSV_FIELD}(?:,{_CSV_FIELD})*+(?:\r\n|\n|\r)?")
_QUOTE_INSIDE = "has a quote inside a field: quote the whole field and double the quotes in it"
T = TypeVar("T")
_BINARY_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"%PDF", b"\xd0\xcf\x11\xe0", b"BZh", b"\xfd7zXZ")


class UploadFormat(StrEnum):
    CSV = "CSV"
    JSONL = "JSONL"


_BY_EXTENSION = {
    ".csv": UploadFormat.CSV,
    ".jsonl": UploadFormat.JSONL,
    ".ndjson": UploadFormat.JSONL,
}
# Extensions that say nothing: the content decides.
_NEUTRAL_EXTENSIONS = {"", ".txt", ".json"}


class UploadError(InputError):
    """The uploaded file cannot be read."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code, field=["upload"])


class Row(NamedTuple):
    """One row of the file: `number` is the line it starts on; `values` by column name."""

    number: int
    values: dict[str, str | None]


class RowError(NamedTuple):
    """A row that cannot be read. `code` is MALFORMED_ROW (broken quoting, a wrong number of
    fields, not a JSON object), INVALID_ENCODING (not UTF-8, or a NUL character) or
    LINE_TOO_LONG; `column` is set when one column is to blame."""

    row: int
    column: str | None
    code: str
    reason: str


RowItem = Row | RowError


def detect_format(filename: str | None, head: bytes) -> UploadFormat:
    """The format of a file from its name's extension or, when that says nothing (none,
    .txt, .json), from its first bytes: a JSON object first is JSONL, anything else CSV.
    Raises UploadError (UNSUPPORTED_FORMAT, EMPTY_UPLOAD)."""
    suffix = PurePath(filename).suffix.lower() if filename else ""
    if suffix not in _BY_EXTENSION and suffix not in _NEUTRAL_EXTENSIONS:
        raise UploadError(
            f"Files ending in {suffix} are not supported; upload CSV (.csv) or JSONL (.jsonl).",
            code="UNSUPPORTED_FORMAT",
        )
    if head.startswith(_BINARY_MAGIC):
        raise UploadError(
            "The file is not text (a spreadsheet or an archive?); upload CSV or JSONL.",
            code="UNSUPPORTED_FORMAT",
        )
    first = head.removeprefix(_BOM).lstrip()[:1]
    if not first:
        raise UploadError("The file is empty.", code="EMPTY_UPLOAD")
    if suffix in _BY_EXTENSION:
        return _BY_EXTENSION[suffix]
    if first == b"[":
        raise UploadError(
            "The file is a JSON array; upload JSONL instead: one JSON object a line.",
            code="UNSUPPORTED_FORMAT",
        )
    return UploadFormat.JSONL if first == b"{" else UploadFormat.CSV


def open_upload(
    stream: BinaryIO,
    *,
    filename: str | None = None,
    format: UploadFormat | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> RowReader:
    """A reader over the rows of `stream`, a binary file positioned at its start. Without
    `format`, the format is detected (`detect_format`), which needs a seekable stream (an
    upload's file is). A CSV's header is read here. Raises UploadError: UNSUPPORTED_FORMAT,
    EMPTY_UPLOAD (no content, or no header), INVALID_HEADER (a blank or repeated column
    name, or a header that cannot be read)."""
    if format is None:
        start = stream.tell()
        head = stream.read(_HEAD_BYTES)
        stream.seek(start)
        format = detect_format(filename, head)
    return RowReader(stream, format, max_line_bytes)


def file_digest(stream: BinaryIO) -> str:
    """The SHA-256 (hex) of the whole file, read in blocks; the file is left at its start,
    ready for `open_upload`. The same file uploaded again has the same digest."""
    digest = hashlib.sha256()
    stream.seek(0)
    while block := stream.read(_DIGEST_BLOCK):
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest()


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), in order."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def read_ahead(chunks: Iterator[list[T]]) -> AsyncGenerator[list[T], None]:
    """The chunks of a file being staged, each parsed in a worker thread (the event loop
    keeps serving) while the caller stages the one before. Close it (`aclosing`) when the
    caller stops early: closing waits for the chunk still being parsed, so that nothing
    reads the file once the request is over."""
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while (chunk := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            yield chunk
    finally:
        if not pending.done():
            with suppress(Exception):
                await pending


def iter_rows(
    stream: BinaryIO, *, format: UploadFormat, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[RowItem]:
    """The rows of `stream` in file order: `Row` or `RowError` (see `open_upload`)."""
    return iter(open_upload(stream, format=format, max_line_bytes=max_line_bytes))


class RowReader:
    """The rows of one file, in file order; iterate once."""

    def __init__(self, stream: BinaryIO, format: UploadFormat, max_line_bytes: int) -> None:
        self.format = format
        self.max_line_bytes = max_line_bytes
        self._lines = _Lines(stream, max_line_bytes)
        self._csv = csv.reader(self._lines, strict=True)
        self.columns: tuple[str, ...] | None = None
        if format is UploadFormat.CSV:
            self.columns = self._header()

    def __iter__(self) -> Iterator[RowItem]:
        if self.format is UploadFormat.JSONL:
            return self._jsonl_rows()
        return self._csv_rows()

    def _header(self) -> tuple[str, ...]:
        while (record := self._next_record()) is not None:
            if isinstance(record, RowError):
                raise UploadError(
                    f"The header (line {record.row}) cannot be read: it {record.reason}.",
                    code="INVALID_HEADER",
                )
            _, fields, dirty, _ = record
            if not any(fields):
                continue
            if dirty and any(_bad_text(f) for f in fields):
                raise UploadError("The header is not valid UTF-8 text.", code="INVALID_HEADER")
            names = tuple(f.strip() for f in fields)
            for position, name in enumerate(names, 1):
                if not name:
                    raise UploadError(
                        f"Column {position} of the header has no name.", code="INVALID_HEADER"
                    )
                if names.index(name) != position - 1:
                    raise UploadError(
                        f"The header names the column {name!r} twice.", code="INVALID_HEADER"
                    )
            return names
        raise UploadError("The file is empty: not even a header.", code="EMPTY_UPLOAD")

    def _next_record(self) -> tuple[int, list[str], bool, bool] | RowError | None:
        """The next CSV record: its first line's number, its fields, whether it holds
        text that may not be stored (bytes that are not UTF-8, a NUL) and whether it holds
        brackets enough to nest too deep; a RowError for a broken one; None at the end."""
        lines = self._lines
        lines.taken = []
        lines.size = 0
        try:
            fields = next(self._csv)
        except StopIteration:
            return None
        except (_TooLong, csv.Error) as exc:
            return self._broken(exc)
        taken = lines.taken
        number, text, dirty = taken[0]
        if len(taken) > 1:
            text = "".join(line[1] or "" for line in taken)
            dirty = any(line[2] for line in taken)
        assert text is not None
        # The csv module keeps a quote inside a field that is not quoted as text.
        if '"' in text and not _CSV_RECORD.fullmatch(text):
            return RowError(number, None, "MALFORMED_ROW", _QUOTE_INSIDE)
        return number, fields, dirty, text.count("[") + text.count("{") > MAX_JSON_DEPTH

    def _broken(self, exc: Exception) -> RowError:
        # Reading resumes on the line after the one the broken record started on.
        lines = self._lines
        number, text, _ = lines.taken[0]
        lines.give_back(lines.taken[1:])
        limit = self.max_line_bytes
        if text is None:
            return RowError(number, None, "LINE_TOO_LONG", f"is longer than {limit} bytes")
        if isinstance(exc, csv.Error) and len(lines.taken) == 1:
            return RowError(number, None, "MALFORMED_ROW", _csv_reason(exc))
        if isinstance(exc, csv.Error):
            # A quoted field ran on into later lines until something broke there.
            return RowError(number, None, "MALFORMED_ROW", "has a quoted field that is not closed")
        return RowError(
            number,
            None,
            "MALFORMED_ROW",
            f"has a quoted field that is not closed within {limit} bytes",
        )

    def _csv_rows(self) -> Iterator[RowItem]:
        columns = self.columns
        assert columns is not None
        width = len(columns)
        while (record := self._next_record()) is not None:
            if isinstance(record, RowError):
                yield record
                continue
            number, fields, dirty, bracketed = record
            if not any(fields):
                continue
            if len(fields) != width:
                yield RowError(
                    number,
                    None,
                    "MALFORMED_ROW",
                    f"has {len(fields)} fields; the header has {width} columns",
                )
                continue
            if dirty:
                bad = next(
                    (
                        (column, why)
                        for column, field in zip(columns, fields, strict=True)
                        if (why := _bad_text(field))
                    ),
                    None,
                )
                if bad is not None:
                    yield RowError(number, bad[0], "INVALID_ENCODING", bad[1])
                    continue
            if bracketed:
                deep = next((c for c, f in zip(columns, fields, strict=True) if _too_deep(f)), None)
                if deep is not None:
                    yield RowError(number, deep, "MALFORMED_ROW", _TOO_DEEP)
                    continue
            yield Row(number, dict(zip(columns, fields, strict=True)))

    def _jsonl_rows(self) -> Iterator[RowItem]:
        lines = self._lines
        limit = self.max_line_bytes
        while True:
            lines.taken = []
            lines.size = 0
            try:
                text = next(lines)
            except StopIteration:
                return
            except _TooLong:
                number = lines.taken[0][0]
                yield RowError(number, None, "LINE_TOO_LONG", f"is longer than {limit} bytes")
                continue
            number, _, dirty = lines.taken[0]
            if text.isspace():
                continue
            try:
                obj = load_json(text)
            except UnreadableJSONError as exc:
                yield RowError(number, None, "MALFORMED_ROW", exc.reason)
                continue
            if not isinstance(obj, dict):
                reason = f"is a JSON {_json_kind(obj)}, not an object"
                yield RowError(number, None, "MALFORMED_ROW", reason)
                continue
            values = {key: _json_text(value) for key, value in obj.items()}
            # Escapes (\u0000, a lone \ud800) can make text that cannot be stored either.
            if dirty or "\\u" in text:
                bad = _bad_value(values)
                if bad is not None:
                    yield RowError(number, bad[0], "INVALID_ENCODING", bad[1])
                    continue
            yield Row(number, values)


_TOO_DEEP = f"nests JSON arrays and objects more than {MAX_JSON_DEPTH} deep"


class UnreadableJSONError(ValueError):
    """JSON text that `load_json` refuses; `reason` reads after a row or column. A
    ValueError like json.loads' own: it is one row's error, reported in its place, not the
    request's."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_json(text: str) -> Any:
    """The value of JSON text a row may hold; UnreadableJSONError for any other text: not
    JSON (NaN and Infinity included, which json.loads takes), nesting arrays and objects
    more than MAX_JSON_DEPTH deep (told before parsing, which would recurse), or holding a
    number past a double's range (PostgreSQL would store it, but write it back in full:
    1e5000 as 5,001 digits, more than Python reads as an integer)."""
    if _too_deep(text):
        raise UnreadableJSONError(_TOO_DEEP)
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise UnreadableJSONError(f"is not valid JSON ({exc.msg}, column {exc.colno})") from None


def _not_json(constant: str) -> float:
    raise UnreadableJSONError(f"is not valid JSON ({constant} is not a JSON value)")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise UnreadableJSONError(f"has a number out of range ({_shortened(text)})")
    return value


def _int(text: str) -> int:
    # A double holds up to 309 digits; only past that can a number be out of range.
    if len(text) > 300 and math.isinf(float(text)):
        raise UnreadableJSONError(f"has a number out of range ({_shortened(text)})")
    return int(text)


def _shortened(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]}"


# Made once: json.loads with a hook would make a decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_float, parse_int=_int)


def _too_deep(text: str) -> bool:
    """Whether the JSON in `text` nests arrays and objects more than MAX_JSON_DEPTH deep,
    told in one pass without parsing (brackets inside strings do not count). Text that is
    not JSON is measured the same way."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        mark = text[token.start()]
        if mark in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif mark != '"':
            depth -= 1
    return False


class _TooLong(Exception):
    """A line or record past the size limit. Not a BulkopsError: it only carries control
    from `_Lines` out through csv.reader, and this module turns it into a RowError."""


# A physical line: its number, its text (None when it is longer than the limit, and
# skipped), and whether it holds undecodable bytes or a NUL (its values need a closer look).
_Line = tuple[int, str | None, bool]


class _Lines:
    """The physical lines of a binary stream, decoded, as an iterator of text for
    csv.reader. The lines of the current record are kept (`taken`), so that a broken
    record can be given back but for its first line, and bounded in size (`_TooLong`)."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._readline = stream.readline
        self._limit = limit
        self._number = 0
        self._back: list[_Line] = []
        self.taken: list[_Line] = []
        self.size = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._back:
            line = self._back.pop()
        else:
            data = self._readline(self._limit + 1)
            if not data:
                raise StopIteration
            self._number += 1
            line = self._decode(data)
        self.taken.append(line)
        text = line[1]
        if text is None:
            raise _TooLong
        self.size += len(text)
        if self.size > self._limit:
            raise _TooLong
        return text

    def _decode(self, data: bytes) -> _Line:
        if len(data) > self._limit:
            while data and not data.endswith(b"\n"):
                data = self._readline(64 * 1024)
            return self._number, None, True
        if self._number == 1:
            data = data.removeprefix(_BOM)
        try:
            text = data.decode()
            dirty = False
        except UnicodeDecodeError:
            text = data.decode(errors="surrogateescape")
            dirty = True
        if "\x00" in text:
            text = text.replace("\x00", _NUL)
            dirty = True
        return self._number, text, dirty

    def give_back(self, lines: list[_Line]) -> None:
        self._back.extend(reversed(lines))


def _csv_reason(exc: csv.Error) -> str:
    message = str(exc)
    if "unexpected end of data" in message:
        return "has a quoted field that is not closed"
    if "new-line character" in message:
        return "has a carriage return in a field that is not quoted"
    if "expected after" in message:
        return _QUOTE_INSIDE
    return f"cannot be read as CSV ({message})"


def _json_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _bad_value(values: dict[str, str | None]) -> tuple[str | None, str] | None:
    """The first column (None when the name itself is bad) whose text cannot be stored."""
    for key, value in values.items():
        if why := _bad_text(key):
            return None, why
        if value is not None and (why := _bad_text(value)):
            return key, why
    return None


def _bad_text(value: str) -> str | None:
    """Why a value cannot be stored as text, or None."""
    if "\x00" in value or _NUL in value:
        return "contains a NUL character"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None
