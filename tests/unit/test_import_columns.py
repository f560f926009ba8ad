"""importProducts' columns: which a file may have, and the staged form of its rows."""

from __future__ import annotations

import json

import pytest

from bulkops.db.imports import STAGED_COLUMNS
from bulkops.operations.import_columns import ImportColumns
from bulkops.uploads import Row, RowError, UploadError


@pytest.mark.parametrize(
    ("header", "code", "says"),
    [
        (["name", "price"], "INVALID_HEADER", "no sku column"),
        (["sku;name;price"], "INVALID_HEADER", "separated by commas"),
        (["sku", "SKU "], "INVALID_HEADER", "the same column"),
        (["sku", "identifier:gtin", "Identifier:GTIN"], "INVALID_HEADER", "the same column"),
        (["sku", "identifier:"], "INVALID_HEADER", "identifier:<KIND>"),
        (["sku", "identifier:barcode"], "INVALID_HEADER", "barcode"),
        (["sku", "colour"], "UNKNOWN_COLUMN", "'colour'"),
    ],
)
def test_a_header_it_cannot_import_refuses_the_file(
    header: list[str], code: str, says: str
) -> None:
    with pytest.raises(UploadError) as raised:
        ImportColumns.of_header(header)
    assert raised.value.code == code
    assert says in raised.value.message


def staged(record: tuple[object, ...]) -> dict[str, object]:
    return dict(zip(STAGED_COLUMNS, record, strict=True))


def test_a_csv_row_is_staged_with_its_identifiers_and_the_export_columns_ignored() -> None:
    columns = ImportColumns.of_header(
        ["ID", "SKU", "Name", "price", "identifier:gtin", "identifiers", "updated_at"]
    )
    row = staged(
        columns.record(
            Row(
                2,
                {
                    "ID": "7",
                    "SKU": " A-1 ",
                    "Name": "Widget",
                    "price": "",
                    "identifier:gtin": " 0400 ",
                    "identifiers": '{"mpn": "M-1", "GTIN": "0400", "UPC": null}',
                    "updated_at": "2025-01-01",
                },
            )
        )
    )
    assert (row["row_number"], row["sku"], row["name"], row["price"]) == (2, " A-1 ", "Widget", "")
    assert row["barcode"] is None
    assert json.loads(str(row["identifiers"])) == [
        ["GTIN", "0400", "identifier:gtin"],
        ["MPN", "M-1", "identifiers"],
    ]
    assert row["error_code"] is None


@pytest.mark.parametrize(
    ("identifiers", "code"),
    [
        ('{"GTIN": "0401"}', "DUPLICATE_IDENTIFIER_KIND"),
        ('{"GTIN": 400}', "INVALID_IDENTIFIER"),
        ('["GTIN", "0400"]', "INVALID_IDENTIFIER"),
        ("{not json", "INVALID_IDENTIFIER"),
    ],
)
def test_identifiers_it_cannot_read_are_a_row_error(identifiers: str, code: str) -> None:
    columns = ImportColumns.of_header(["sku", "identifier:GTIN", "identifiers"])
    values: dict[str, str | None] = {
        "sku": "A",
        "identifier:GTIN": "0400",
        "identifiers": identifiers,
    }
    row = staged(columns.record(Row(3, values)))
    assert (row["error_code"], row["error_column"]) == (code, "identifiers")


def test_jsonl_keys_are_checked_row_by_row() -> None:
    columns = ImportColumns()
    row = staged(columns.record(Row(1, {"sku": "A", "Identifiers": '{"EAN": "1"}'})))
    assert row["identifiers"] == '[["EAN", "1", "Identifiers"]]'
    with pytest.raises(UploadError) as raised:
        columns.record(Row(2, {"sku": "B", "colour": "red"}))
    assert (raised.value.code, raised.value.field) == ("UNKNOWN_COLUMN", ["upload"])
    assert raised.value.message.startswith("Row 2 has the column 'colour'")


def test_a_row_that_cannot_be_read_is_staged_with_its_error() -> None:
    row = staged(ImportColumns().record(RowError(4, "name", "INVALID_ENCODING", "is bad")))
    assert row["row_number"] == 4
    assert (row["error_code"], row["error_column"], row["error_message"]) == (
        "INVALID_ENCODING",
        "name",
        "name is bad.",
    )
