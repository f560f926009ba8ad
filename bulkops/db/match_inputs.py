"""matchProducts' staged input: its rows written in chunks, copied for a retry, sized,
walked in row order and removed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

STAGE_CHUNK = 5000


@dataclass(frozen=True)
class StagedRow:
    """One input row as staged: normalized match fields and the row as given."""

    row: int
    codes: tuple[str, ...]
    identifiers: tuple[tuple[str, str], ...]
    sku: str | None
    name: str | None
    brand: str | None
    fields: dict[str, Any]
    error_code: str | None = None
    error_message: str | None = None


async def insert_input(
    conn: asyncpg.Connection, input_id: str, *, columns: Sequence[str], row_count: int
) -> None:
    await conn.execute(
        "INSERT INTO match_inputs (id, columns, row_count) VALUES ($1, $2, $3)",
        input_id,
        list(columns),
        row_count,
    )


async def insert_rows(conn: asyncpg.Connection, input_id: str, rows: Sequence[StagedRow]) -> None:
    """Stage the rows with set-based inserts (COPY does not work under row-level security)."""
    for start in range(0, len(rows), STAGE_CHUNK):
        chunk = rows[start : start + STAGE_CHUNK]
        await conn.execute(
            """INSERT INTO match_rows (input_id, row_number, codes, identifier_kinds,
                                       identifier_values, sku, name, brand, fields,
                                       error_code, error_message)
               SELECT $1, x.row_number,
                      ARRAY(SELECT jsonb_array_elements_text(x.codes)),
                      ARRAY(SELECT e->>0 FROM jsonb_array_elements(x.identifiers) AS e),
                      ARRAY(SELECT e->>1 FROM jsonb_array_elements(x.identifiers) AS e),
                      x.sku, x.name, x.brand, x.fields, x.error_code, x.error_message
               FROM jsonb_to_recordset($2::jsonb) AS x(
                 row_number int, codes jsonb, identifiers jsonb, sku text, name text,
                 brand text, fields jsonb, error_code text, error_message text)""",
            input_id,
            [
                {
                    "row_number": r.row,
                    "codes": list(r.codes),
                    "identifiers": [list(pair) for pair in r.identifiers],
                    "sku": r.sku,
                    "name": r.name,
                    "brand": r.brand,
                    "fields": r.fields,
                    "error_code": r.error_code,
                    "error_message": r.error_message,
                }
                for r in chunk
            ],
        )


async def failed_rows(conn: asyncpg.Connection, job_id: str) -> list[int]:
    """The row numbers a matchProducts job reported as failed items, in order."""
    rows = await conn.fetch(
        """SELECT DISTINCT row_number FROM job_errors
           WHERE job_id = $1 AND tenant_id = current_tenant_id() AND row_number IS NOT NULL
           ORDER BY row_number""",
        job_id,
    )
    return [r["row_number"] for r in rows]


async def copy_input(
    conn: asyncpg.Connection, source: str, target: str, *, rows: Sequence[int] | None = None
) -> int | None:
    """Stage the rows of input `source` again as a new input `target` (only the row numbers
    `rows`, when given), for a job of its own: its results are then its own. The number of
    rows staged, or None when `source` is gone."""
    staged: int | None = await conn.fetchval(
        """WITH input AS (
             INSERT INTO match_inputs (id, columns, row_count)
             SELECT $2, columns, 0 FROM match_inputs
             WHERE id = $1 AND tenant_id = current_tenant_id()
             RETURNING id),
           copied AS (
             INSERT INTO match_rows (input_id, row_number, codes, identifier_kinds,
                                     identifier_values, sku, name, brand, fields,
                                     error_code, error_message)
             SELECT i.id, r.row_number, r.codes, r.identifier_kinds, r.identifier_values,
                    r.sku, r.name, r.brand, r.fields, r.error_code, r.error_message
             FROM match_rows r CROSS JOIN input i
             WHERE r.input_id = $1 AND r.tenant_id = current_tenant_id()
               AND ($3::int[] IS NULL OR r.row_number = ANY($3::int[]))
             ORDER BY r.row_number
             RETURNING 1)
           SELECT CASE WHEN EXISTS (SELECT 1 FROM input) THEN (SELECT count(*) FROM copied)
                  END""",
        source,
        target,
        None if rows is None else list(rows),
    )
    if staged is not None:
        await conn.execute(
            """UPDATE match_inputs SET row_count = $2
               WHERE id = $1 AND tenant_id = current_tenant_id()""",
            target,
            staged,
        )
    return staged


async def set_input_size(
    conn: asyncpg.Connection, input_id: str, *, columns: Sequence[str], row_count: int
) -> None:
    await conn.execute(
        """UPDATE match_inputs SET columns = $2, row_count = $3
           WHERE id = $1 AND tenant_id = current_tenant_id()""",
        input_id,
        list(columns),
        row_count,
    )


async def input_size(conn: asyncpg.Connection, input_id: str) -> int:
    count: int | None = await conn.fetchval(
        "SELECT row_count FROM match_inputs WHERE id = $1 AND tenant_id = current_tenant_id()",
        input_id,
    )
    return count or 0


async def next_rows(
    conn: asyncpg.Connection, input_id: str, *, after: int, limit: int
) -> list[int]:
    """The next `limit` staged row numbers past `after`, in row order."""
    rows = await conn.fetch(
        """SELECT row_number FROM match_rows
           WHERE input_id = $1 AND row_number > $2 AND tenant_id = current_tenant_id()
           ORDER BY row_number LIMIT $3""",
        input_id,
        after,
        limit,
    )
    return [r["row_number"] for r in rows]


async def delete_input(conn: asyncpg.Connection, input_id: str) -> None:
    await conn.execute(
        "DELETE FROM match_inputs WHERE id = $1 AND tenant_id = current_tenant_id()", input_id
    )


async def input_columns(conn: asyncpg.Connection, input_id: str) -> list[str] | None:
    columns: list[str] | None = await conn.fetchval(
        "SELECT columns FROM match_inputs WHERE id = $1 AND tenant_id = current_tenant_id()",
        input_id,
    )
    return columns
