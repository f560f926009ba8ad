"""Reading uploaded CSV and JSONL files: rows, row numbers and row errors."""

from __future__ import annotations

import io

import pytest

from bulkops.uploads import (
    MAX_JSON_DEPTH,
    Row,
    RowError,
    RowItem,
    UploadError,
    UploadFormat,
    detect_format,
    iter_rows,
    open_upload,
)


def read(content: bytes, *, filename: str | None = "rows.csv", limit: int = 200) -> list[RowItem]:
    return list(open_upload(io.BytesIO(content), filename=filename, max_line_bytes=limit))


def errors(items: list[RowItem]) -> list[tuple[int, str | None, str]]:
    return [(i.row, i.column, i.code) for i in items if isinstance(i, RowError)]


def rows(items: list[RowItem]) -> list[tuple[int, dict[str, str | None]]]:
    return [(i.number, i.values) for i in items if isinstance(i, Row)]


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        ("a.csv", b"sku,name", UploadFormat.CSV),
        ("a.CSV", b'{"sku": 1}', UploadFormat.CSV),
        ("a.jsonl", b"sku,name", UploadFormat.JSONL),
        ("a.ndjson", b'{"sku": 1}', UploadFormat.JSONL),
        (None, b'\xef\xbb\xbf\n  {"sku": 1}', UploadFormat.JSONL),
        ("a.txt", b"sku,name", UploadFormat.CSV),
        ("a.json", b'{"sku": 1}\n{"sku": 2}', UploadFormat.JSONL),
    ],
)
def test_the_format_comes_from_the_extension_or_the_content(
    filename: str | None, head: bytes, expected: UploadFormat
) -> None:
    assert detect_format(filename, head) is expected


@pytest.mark.parametrize(
    ("filename", "head", "code"),
    [
        ("a.xlsx", b"PK\x03\x04", "UNSUPPORTED_FORMAT"),
        ("a.csv", b"PK\x03\x04", "UNSUPPORTED_FORMAT"),
        ("a.csv.gz", b"\x1f\x8b", "UNSUPPORTED_FORMAT"),
        ("a.json", b'[{"sku": 1}]', "UNSUPPORTED_FORMAT"),
        ("a.csv", b"", "EMPTY_UPLOAD"),
        (None, b"\xef\xbb\xbf \r\n\n", "EMPTY_UPLOAD"),
    ],
)
def test_files_that_cannot_be_read_are_refused(filename: str, head: bytes, code: str) -> None:
    with pytest.raises(UploadError) as raised:
        detect_format(filename, head)
    assert (raised.value.code, raised.value.field) == (code, ["upload"])


def test_a_csv_header_names_the_columns_and_rows_are_numbered_by_line() -> None:
    reader = open_upload(
        io.BytesIO(b'\xef\xbb\xbf sku ,name\r\nA,"Two\nlines"\r\n\r\n,\nB,\n'), filename="x.csv"
    )
    assert (reader.format, reader.columns) == (UploadFormat.CSV, ("sku", "name"))
    assert list(reader) == [
        Row(2, {"sku": "A", "name": "Two\nlines"}),
        Row(6, {"sku": "B", "name": ""}),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"sku,,name\nA,B,C\n", "Column 2 of the header has no name."),
        (b"sku,name,sku\nA,B,C\n", "The header names the column 'sku' twice."),
        (b'sku,"name\n', "cannot be read"),
        (b"sku,n\xe4me\nA,B\n", "not valid UTF-8"),
        (b"\n\n", "not even a header"),
    ],
)
def test_a_bad_header_refuses_the_file(content: bytes, message: str) -> None:
    with pytest.raises(UploadError) as raised:
        open_upload(io.BytesIO(content), format=UploadFormat.CSV)
    assert message in raised.value.message


def test_broken_csv_rows_are_errors_in_their_place_and_reading_goes_on() -> None:
    items = read(
        b"sku,name,price\n"
        b"A,Fine,1\n"  # 2
        b'B,"Unclosed,2\n'  # 3
        b"C,Fine,3\n"  # 4
        b"D,Caf\xe9,4\n"  # 5
        b"E,Two,fields,too many\n"  # 6
        b"F,Nul\x00l,6\n"  # 7
        b'G,"Quote"d,7\n'  # 8
        b"H," + b"x" * 500 + b",8\n"  # 9
        b"I,Last,9"  # 10, no final newline
    )
    assert errors(items) == [
        (3, None, "MALFORMED_ROW"),
        (5, "name", "INVALID_ENCODING"),
        (6, None, "MALFORMED_ROW"),
        (7, "name", "INVALID_ENCODING"),
        (8, None, "MALFORMED_ROW"),
        (9, None, "LINE_TOO_LONG"),
    ]
    assert [n for n, _ in rows(items)] == [2, 4, 10]
    reasons = {i.row: i.reason for i in items if isinstance(i, RowError)}
    assert reasons[3] == "has a quoted field that is not closed"
    assert reasons[5] == "is not valid UTF-8"
    assert reasons[6] == "has 4 fields; the header has 3 columns"
    assert reasons[7] == "contains a NUL character"
    assert reasons[9] == "is longer than 200 bytes"


def test_an_unclosed_quote_gives_back_the_lines_it_swallowed() -> None:
    body = b"".join(b"R%d,Name %d\n" % (i, i) for i in range(3, 40))
    items = read(b'sku,name\nA,"Unclosed\n' + body, limit=100)
    assert errors(items) == [(2, None, "MALFORMED_ROW")]
    assert "not closed within 100 bytes" in items[0].reason  # type: ignore[union-attr]
    assert [n for n, _ in rows(items)] == list(range(3, 40))


def test_a_huge_line_is_skipped_without_being_held() -> None:
    huge = b"B," + b"x" * (10 * 1024 * 1024) + b"\n"
    items = read(b"sku,name\nA,1\n" + huge + b"C,3\n", limit=1024)
    assert errors(items) == [(3, None, "LINE_TOO_LONG")]
    assert rows(items) == [(2, {"sku": "A", "name": "1"}), (4, {"sku": "C", "name": "3"})]


def test_jsonl_values_are_text_and_bad_lines_are_errors() -> None:
    items = list(
        iter_rows(
            io.BytesIO(
                b'\xef\xbb\xbf{"sku": "A", "price": 12.90, "n": 3, "ok": true, "none": null,'
                b' "attributes": {"a": [1, "\xc3\xa9"]}}\n'
                b"   \n"
                b'{"sku": "B",}\n'
                b'"just a string"\n'
                b'{"sku": "C\\u0000"}\n'
                b'{"sku": "D", "name": "\xff"}\n'
                b'{"sku": "' + b"E" * 300 + b'"}\n'
                b'{"sku": "F"}'
            ),
            format=UploadFormat.JSONL,
            max_line_bytes=200,
        )
    )
    assert rows(items) == [
        (
            1,
            {
                "sku": "A",
                "price": "12.9",
                "n": "3",
                "ok": "true",
                "none": None,
                "attributes": '{"a": [1, "é"]}',
            },
        ),
        (8, {"sku": "F"}),
    ]
    assert errors(items) == [
        (3, None, "MALFORMED_ROW"),
        (4, None, "MALFORMED_ROW"),
        (5, "sku", "INVALID_ENCODING"),
        (6, "name", "INVALID_ENCODING"),
        (7, None, "LINE_TOO_LONG"),
    ]
    reasons = [i.reason for i in items if isinstance(i, RowError)]
    assert reasons[0].startswith("is not valid JSON")
    assert reasons[1] == "is a JSON string, not an object"
    assert reasons[2] == "contains a NUL character"


def test_a_row_is_a_pair_of_its_number_and_its_values() -> None:
    (item,) = read(b"sku\nA\n")
    number, values = item
    assert (number, values) == (2, {"sku": "A"})


def test_a_quote_inside_an_unquoted_field_is_a_malformed_row() -> None:
    items = read(
        b"sku,name\n"
        b'q"uote,z\n'  # 2
        b'A,"Say ""hi"""\n'  # 3: quotes doubled inside a quoted field
        b'B,trailing"\n'  # 4
        b'C,"Two\nlines",\n'  # 5: a quoted line break, then a wrong number of fields
        b'D,"Acme, Inc"\n'  # 7
        b' "E",spaced\n'  # 8: a space before the quote: the field is not quoted
    )
    assert errors(items) == [
        (2, None, "MALFORMED_ROW"),
        (4, None, "MALFORMED_ROW"),
        (5, None, "MALFORMED_ROW"),
        (8, None, "MALFORMED_ROW"),
    ]
    assert rows(items) == [
        (3, {"sku": "A", "name": 'Say "hi"'}),
        (7, {"sku": "D", "name": "Acme, Inc"}),
    ]
    reasons = {i.row: i.reason for i in items if isinstance(i, RowError)}
    assert reasons[2] == reasons[4] == reasons[8]
    assert reasons[2].startswith("has a quote inside a field")


def test_a_quote_inside_an_unquoted_header_field_refuses_the_file() -> None:
    with pytest.raises(UploadError) as raised:
        open_upload(io.BytesIO(b'sku,na"me\nA,B\n'), format=UploadFormat.CSV)
    assert raised.value.code == "INVALID_HEADER"
    assert "quote inside a field" in raised.value.message


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_nested_too_deep_is_a_row_error_and_reading_goes_on() -> None:
    deep = nested(5000)
    items = read(
        (
            f'{{"sku": "A", "attributes": {{"a": {deep}}}}}\n'
            f"{deep}\n"
            # The line's object, attributes and its key: exactly MAX_JSON_DEPTH deep.
            f'{{"sku": "B", "attributes": {{"a": {nested(MAX_JSON_DEPTH - 2)}}}}}\n'
            f'{{"sku": "C", "note": "{"[" * 5000}"}}\n'
            f'{{"sku": "D", "attributes": {{"a": {nested(MAX_JSON_DEPTH - 1)}}}}}\n'
        ).encode(),
        filename="rows.jsonl",
        limit=128 * 1024,
    )
    assert errors(items) == [
        (1, None, "MALFORMED_ROW"),
        (2, None, "MALFORMED_ROW"),
        (5, None, "MALFORMED_ROW"),
    ]
    assert [values["sku"] for _, values in rows(items)] == ["B", "C"]
    reasons = {i.reason for i in items if isinstance(i, RowError)}
    assert reasons == {f"nests JSON arrays and objects more than {MAX_JSON_DEPTH} deep"}


def test_a_csv_field_nested_too_deep_names_its_column() -> None:
    deep = nested(5000)
    items = read(
        f'sku,identifiers,attributes\nA,{deep},\nB,,"{{""a"": {deep}}}"\nC,,"[""{"[" * 99}""]"\n'
        f"D,{nested(MAX_JSON_DEPTH)},\n".encode(),
        limit=128 * 1024,
    )
    assert errors(items) == [
        (2, "identifiers", "MALFORMED_ROW"),
        (3, "attributes", "MALFORMED_ROW"),
    ]
    assert [values["sku"] for _, values in rows(items)] == ["C", "D"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"sku": "A", "price": NaN}', "is not valid JSON (NaN is not a JSON value)"),
        (b'{"sku": "A", "n": -Infinity}', "is not valid JSON (-Infinity is not a JSON value)"),
        (b'{"sku": "A", "price": 1e400}', "has a number out of range (1e400)"),
        (b'{"sku": "A", "n": -1' + b"0" * 5000 + b"}", "has a number out of range ("),
        (b'{"sku": "A", "n": 1' + b"0" * 400 + b".5}", "has a number out of range ("),
    ],
)
def test_jsonl_numbers_a_row_cannot_hold_are_row_errors(line: bytes, reason: str) -> None:
    items = read(line + b'\n{"sku": "B", "price": 1e300}\n', filename="rows.jsonl", limit=8192)
    assert errors(items) == [(1, None, "MALFORMED_ROW")]
    assert items[0].reason.startswith(reason)  # type: ignore[union-attr]
    assert rows(items) == [(2, {"sku": "B", "price": "1e+300"})]
