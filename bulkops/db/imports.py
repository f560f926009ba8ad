"""The staged rows of uploaded files (importProducts): staging, walking, removal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

# A staged row as the API process copies it in, in this column order.
STAGED_COLUMNS = (
    "row_number",
    "sku",
    "name",
    "barcode",
    "brand",
    "category",
    "description",
    "status",
    "price",
    "attributes",
    "identifiers",
    "error_code",
    "error_column",
    "error_message",
)
StagedRecord = tuple[Any, ...]
# Uploads no unfinished job walks are removed once this old: longer than any staging or
# inline run takes (those hold their upload only while the request is answered).
STALE_AFTER = timedelta(hours=1)
# What Python's str.strip() would remove around a value, for the common cases.
_BLANKS = " \t\r\n"


async def begin_staging(conn: asyncpg.Connection, upload_id: str) -> None:
    """Record the upload and make the transaction's landing table for its rows.

    COPY cannot write to a table with row-level security (PostgreSQL refuses it for a role
    the policies apply to), so rows are copied into a temporary table first and moved on
    with one INSERT ... SELECT per chunk, which the policy checks."""
    await conn.execute("INSERT INTO import_uploads (id) VALUES ($1)", upload_id)
    await conn.execute(
        """CREATE TEMP TABLE import_rows_in (
             row_number int, sku text, name text, barcode text, brand text, category text,
             description text, status text, price text, attributes text, identifiers text,
             error_code text, error_column text, error_message text
           ) ON COMMIT DROP"""
    )


async def stage_chunk(
    conn: asyncpg.Connection, upload_id: str, records: Sequence[StagedRecord]
) -> None:
    """Add rows (in file order) to the upload: trimmed, with blanks as null."""
    await conn.copy_records_to_table(
        "import_rows_in", records=records, columns=list(STAGED_COLUMNS)
    )

    def text(column: str) -> str:
        return f"NULLIF(btrim({column}, $2), '')"

    await conn.execute(
        f"""INSERT INTO import_rows
              (upload_id, row_number, sku, name, barcode, brand, category, description,
               status, price, attributes, identifiers, error_code, error_column,
               error_message)
            SELECT $1, row_number, {text("sku")}, {text("name")}, {text("barcode")},
                   {text("brand")}, {text("category")}, {text("description")},
                   upper({text("status")}),
                   {text("price")}, {text("attributes")}, COALESCE(identifiers::jsonb, '[]'),
                   error_code, error_column, error_message
            FROM import_rows_in ORDER BY row_number""",
        upload_id,
        _BLANKS,
    )
    await conn.execute("TRUNCATE import_rows_in")


async def finish_staging(
    conn: asyncpg.Connection, upload_id: str, *, rows: int, unique_kinds: Sequence[str]
) -> None:
    """Mark the rows that clash with an earlier row of the same file (a SKU, or a unique
    identifier value given to another SKU) and record how many rows there are. Only the
    identifiers of `unique_kinds` are compared: none at all when it is empty (the file
    names no unique kind), which saves reading every staged row's identifiers."""
    # Room to group a large file's SKUs and values in memory rather than on disk.
    await conn.execute("SET LOCAL work_mem = '64MB'")
    await conn.execute(
        """WITH repeated AS (
             SELECT sku FROM import_rows
             WHERE upload_id = $1 AND error_code IS NULL AND sku IS NOT NULL
             GROUP BY sku HAVING count(*) > 1),
           ranked AS (
             SELECT id, row_number,
                    first_value(row_number) OVER (PARTITION BY sku ORDER BY id) AS first_row
             FROM import_rows
             WHERE upload_id = $1 AND error_code IS NULL AND sku IN (SELECT sku FROM repeated))
           UPDATE import_rows r
           SET error_code = 'DUPLICATE_SKU', error_column = 'sku',
               error_message = format('The SKU is on row %s already; a file names each SKU '
                                      'once.', ranked.first_row)
           FROM ranked WHERE r.id = ranked.id AND ranked.row_number > ranked.first_row""",
        upload_id,
    )
    if unique_kinds:
        await _identifier_repeats(conn, upload_id, unique_kinds)
    await conn.execute(
        """UPDATE import_uploads SET row_count = $2
           WHERE id = $1 AND tenant_id = current_tenant_id()""",
        upload_id,
        rows,
    )


async def _identifier_repeats(
    conn: asyncpg.Connection, upload_id: str, unique_kinds: Sequence[str]
) -> None:
    await conn.execute(
        """WITH pairs AS (
             SELECT r.id, r.row_number, r.sku, p.e->>0 AS kind, p.e->>1 AS value,
                    p.e->>2 AS col, p.n
             FROM import_rows r, jsonb_array_elements(r.identifiers) WITH ORDINALITY AS p(e, n)
             WHERE r.upload_id = $1 AND r.error_code IS NULL AND r.identifiers <> '[]'
               AND p.e->>0 = ANY($2::text[])),
           repeated AS (
             SELECT kind, value FROM pairs GROUP BY kind, value HAVING count(*) > 1),
           ranked AS (
             SELECT p.id, p.row_number, p.kind, p.value, p.col, p.n,
                    first_value(p.row_number) OVER w AS first_row,
                    first_value(p.sku) OVER w AS first_sku
             FROM pairs p JOIN repeated USING (kind, value)
             WINDOW w AS (PARTITION BY p.kind, p.value ORDER BY p.id)),
           later AS (
             SELECT DISTINCT ON (id) * FROM ranked
             WHERE row_number > first_row ORDER BY id, n)
           UPDATE import_rows r
           SET error_code = 'IDENTIFIER_TAKEN', error_column = later.col,
               error_message = format('%s %s is given to SKU %s on row %s already; a %s names '
                                      'one product.', later.kind, later.value,
                                      later.first_sku, later.first_row, later.kind)
           FROM later WHERE r.id = later.id""",
        upload_id,
        list(unique_kinds),
    )


async def row_count(conn: asyncpg.Connection, upload_id: str) -> int:
    """How many rows the upload holds (0 when it is gone)."""
    count: int | None = await conn.fetchval(
        "SELECT row_count FROM import_uploads WHERE id = $1 AND tenant_id = current_tenant_id()",
        upload_id,
    )
    return count or 0


async def batch_ids(
    conn: asyncpg.Connection, upload_id: str, *, after: int, limit: int
) -> list[int]:
    """The next `limit` staged rows of the upload past `after`, in row order."""
    rows = await conn.fetch(
        """SELECT id FROM import_rows
           WHERE upload_id = $1 AND id > $2 AND tenant_id = current_tenant_id()
           ORDER BY id LIMIT $3""",
        upload_id,
        after,
        limit,
    )
    return [r["id"] for r in rows]


async def drop_upload(conn: asyncpg.Connection, upload_id: str) -> None:
    await conn.execute(
        "DELETE FROM import_rows WHERE upload_id = $1 AND tenant_id = current_tenant_id()",
        upload_id,
    )
    await conn.execute(
        "DELETE FROM import_uploads WHERE id = $1 AND tenant_id = current_tenant_id()", upload_id
    )


async def job_walks(conn: asyncpg.Connection, upload_id: str) -> bool:
    """Whether a job walks this upload."""
    walks: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM jobs WHERE tenant_id = current_tenant_id()
                            AND selection->'staged'->>'upload_id' = $1)""",
        upload_id,
    )
    return walks


async def remove_stale(conn: asyncpg.Connection, age: timedelta = STALE_AFTER) -> int:
    """Every tenant's uploads that no unfinished job walks, older than `age`."""
    removed: int = await conn.fetchval("SELECT remove_stale_imports($1)", age)
    return removed
