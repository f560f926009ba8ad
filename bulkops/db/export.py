"""The product export as one `COPY ... TO STDOUT`: CSV with a header, or one JSON object a line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import pairwise
from typing import Any, Literal

import asyncpg

from bulkops.db.products import filter_sql
from bulkops.selection import ProductFilter

ExportFormat = Literal["csv", "jsonl"]

EXPORT_COLUMNS = (
    "id",
    "sku",
    "barcode",
    "name",
    "brand",
    "category",
    "description",
    "status",
    "price",
    "attributes",
    "identifiers",
    "created_at",
    "updated_at",
)

# Timestamps are written in UTC whatever the session's TimeZone, as Python's isoformat() does.
_SELECT_ROWS = """SELECT p.id, p.sku, p.barcode, p.name, p.brand, p.category, p.description,
       p.status, p.price, p.attributes,
       COALESCE((SELECT jsonb_object_agg(i.kind, i.value) FROM product_identifiers i
                 WHERE i.product_id = p.id AND i.tenant_id = current_tenant_id()),
                '{}'::jsonb) AS identifiers,
       to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
         AS created_at,
       to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
         AS updated_at
FROM products p
WHERE """


def export_query(flt: ProductFilter | None, fmt: ExportFormat) -> tuple[str, list[Any]]:
    """The SELECT whose COPY is the export, in id order, and its parameters."""
    args: list[Any] = []
    rows = _SELECT_ROWS + filter_sql(flt, args)
    if fmt == "csv":
        return f"{rows}\nORDER BY p.id", args
    return f"SELECT row_to_json(e)::text FROM ({rows}) e ORDER BY e.id", args


async def copy_products(
    conn: asyncpg.Connection,
    flt: ProductFilter | None,
    fmt: ExportFormat,
    *,
    output: Callable[[bytes], Awaitable[None]],
) -> None:
    """Copy the tenant's products matching `flt` to `output`, chunk by chunk.

    asyncpg stops reading from Postgres while `output` is awaited, so a slow `output` slows
    the COPY down instead of buffering it."""
    query, args = export_query(flt, fmt)
    # Rows go out in id order as they are read: only index scans deliver that order without
    # sorting the whole selection first. Without this, a table with no statistics yet (just
    # imported) gets a bitmap plan that looks the identifiers up by tenant for every row.
    await conn.execute("SET LOCAL enable_bitmapscan = off")
    if fmt == "csv":
        await conn.copy_from_query(query, *args, output=output, format="csv", header=True)
    else:
        # Text format would escape every backslash of the JSON. CSV with a quote and a
        # delimiter that JSON text never holds raw (it escapes control characters) writes each
        # one-column row as it is, one line each.
        await conn.copy_from_query(
            query, *args, output=output, format="csv", quote="\x01", delimiter="\x02"
        )


# A batch whose ids leave at most this many ids out between its first and its last is
# copied as that range less those ids.
MAX_GAPS = 1000


def ids_condition(ids: list[int]) -> str:
    """A condition true for a product whose id is one of `ids`, as SQL text.

    COPY takes no parameters: given some, asyncpg asks the server to quote each value (two
    round trips), and the statement then holds a constant array of every id, which the
    server parses and plans for each batch. A batch's ids are most often a dense run of the
    primary key, so the condition is the range from the first to the last, less the ids
    in between that are not in the batch (exactly the same products); the ids themselves
    only when they are too scattered for that. Integers only: nothing to quote."""
    wanted = set(ids)
    if not wanted:
        return "false"
    first, last = int(min(wanted)), int(max(wanted))
    between = f"p.id BETWEEN {first} AND {last}"
    missing = last - first + 1 - len(wanted)
    if missing == 0:
        return between
    ordered = sorted(wanted)
    if missing > MAX_GAPS:
        return f"p.id = ANY('{{{','.join(str(int(i)) for i in ordered)}}}'::bigint[])"
    gaps = [str(i) for a, b in pairwise(ordered) if b - a > 1 for i in range(a + 1, b)]
    return f"{between} AND p.id <> ALL('{{{','.join(gaps)}}}'::bigint[])"


async def copy_products_by_ids(
    conn: asyncpg.Connection,
    ids: list[int],
    fmt: ExportFormat,
    *,
    output: Callable[[bytes], Awaitable[None]],
) -> int:
    """Copy the tenant's products `ids` to `output` in id order, as `copy_products` does
    but without the CSV header (a file export writes it once, first). Returns how many
    rows were copied: products deleted since their ids were read are not."""
    rows = f"{_SELECT_ROWS}p.tenant_id = current_tenant_id() AND {ids_condition(ids)}"
    if fmt == "csv":
        status = await conn.copy_from_query(f"{rows}\nORDER BY p.id", output=output, format="csv")
    else:
        status = await conn.copy_from_query(
            f"SELECT row_to_json(e)::text FROM ({rows}) e ORDER BY e.id",
            output=output,
            format="csv",
            quote="\x01",
            delimiter="\x02",
        )
    return int(status.rsplit(" ", 1)[-1])


def csv_header() -> bytes:
    """The header line of a CSV export, as COPY writes it."""
    return (",".join(EXPORT_COLUMNS) + "\n").encode()
