"""fetchProductImages' staged sources: written in chunks, walked in row order, read with
their products for a batch, and the fetched images written for them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

STAGE_CHUNK = 5000


@dataclass(frozen=True)
class StagedSource:
    """One source as staged: the product it names (by id, SKU or both) and its URL, or the
    error that keeps it from being fetched."""

    row: int
    product_id: int | None
    sku: str | None
    url: str | None
    error_code: str | None = None
    error_column: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class SourceOfBatch:
    """A staged source as a batch reads it: the product found for it (None when none is),
    that product's SKU, and whether the URL is already one of its images."""

    row: int
    given_id: int | None
    given_sku: str | None
    url: str | None
    error_code: str | None
    error_column: str | None
    error_message: str | None
    product_id: int | None
    product_sku: str | None
    already_present: bool


@dataclass(frozen=True)
class NewImage:
    """An image to add: the source's row, its product and the stored file."""

    row: int
    product_id: int
    storage_key: str
    content_type: str
    source_url: str


async def insert_source(conn: asyncpg.Connection, source_id: str) -> None:
    await conn.execute("INSERT INTO image_sources (id) VALUES ($1)", source_id)


async def insert_rows(
    conn: asyncpg.Connection, source_id: str, rows: Sequence[StagedSource]
) -> None:
    """Stage the rows with set-based inserts (COPY does not work under row-level security)."""
    for start in range(0, len(rows), STAGE_CHUNK):
        chunk = rows[start : start + STAGE_CHUNK]
        await conn.execute(
            """INSERT INTO image_source_rows (source_id, row_number, product_id, sku, url,
                                              error_code, error_column, error_message)
               SELECT $1, x.row_number, x.product_id, x.sku, x.url, x.error_code,
                      x.error_column, x.error_message
               FROM jsonb_to_recordset($2::jsonb) AS x(
                 row_number int, product_id bigint, sku text, url text, error_code text,
                 error_column text, error_message text)""",
            source_id,
            [
                {
                    "row_number": r.row,
                    "product_id": r.product_id,
                    "sku": r.sku,
                    "url": r.url,
                    "error_code": r.error_code,
                    "error_column": r.error_column,
                    "error_message": r.error_message,
                }
                for r in chunk
            ],
        )


async def set_size(conn: asyncpg.Connection, source_id: str, row_count: int) -> None:
    await conn.execute(
        """UPDATE image_sources SET row_count = $2
           WHERE id = $1 AND tenant_id = current_tenant_id()""",
        source_id,
        row_count,
    )


async def source_size(conn: asyncpg.Connection, source_id: str) -> int:
    count: int | None = await conn.fetchval(
        "SELECT row_count FROM image_sources WHERE id = $1 AND tenant_id = current_tenant_id()",
        source_id,
    )
    return count or 0


async def next_rows(
    conn: asyncpg.Connection, source_id: str, *, after: int, limit: int
) -> list[int]:
    """The next `limit` staged row numbers past `after`, in row order."""
    rows = await conn.fetch(
        """SELECT row_number FROM image_source_rows
           WHERE source_id = $1 AND row_number > $2 AND tenant_id = current_tenant_id()
           ORDER BY row_number LIMIT $3""",
        source_id,
        after,
        limit,
    )
    return [r["row_number"] for r in rows]


async def delete_source(conn: asyncpg.Connection, source_id: str) -> None:
    await conn.execute(
        "DELETE FROM image_sources WHERE id = $1 AND tenant_id = current_tenant_id()", source_id
    )


async def batch_sources(
    conn: asyncpg.Connection, source_id: str, rows: Sequence[int]
) -> list[SourceOfBatch]:
    """The staged rows `rows` in row order, each with the product it names (by id when it
    gives one, else by SKU) and whether its URL is already an image of that product."""
    # One join by id and one by SKU (not one join on either), so that each uses its index;
    # likewise one look for the URL per join: under row-level security PostgreSQL will not
    # use an index for a condition on COALESCE(...) (it cannot tell it leaks nothing), and
    # scanned every image of the tenant for every row.
    found = await conn.fetch(
        """SELECT r.row_number, r.product_id AS given_id, r.sku AS given_sku, r.url,
                  r.error_code, r.error_column, r.error_message,
                  p.id AS product_id, p.sku AS product_sku,
                  r.url IS NOT NULL AND (
                    EXISTS (SELECT 1 FROM product_images m
                            WHERE m.product_id = by_id.id AND m.source_url = r.url
                              AND m.tenant_id = current_tenant_id())
                    OR EXISTS (SELECT 1 FROM product_images m
                               WHERE m.product_id = by_sku.id AND m.source_url = r.url
                                 AND m.tenant_id = current_tenant_id())) AS already_present
           FROM image_source_rows r
           LEFT JOIN products by_id
             ON by_id.id = r.product_id AND by_id.tenant_id = current_tenant_id()
            AND r.error_code IS NULL
           LEFT JOIN products by_sku
             ON by_sku.sku = r.sku AND by_sku.tenant_id = current_tenant_id()
            AND r.product_id IS NULL AND r.error_code IS NULL
           CROSS JOIN LATERAL (
             SELECT COALESCE(by_id.id, by_sku.id) AS id,
                    COALESCE(by_id.sku, by_sku.sku) AS sku) p
           WHERE r.source_id = $1 AND r.row_number = ANY($2::int[])
             AND r.tenant_id = current_tenant_id()
           ORDER BY r.row_number""",
        source_id,
        list(rows),
    )
    return [
        SourceOfBatch(
            row=r["row_number"],
            given_id=r["given_id"],
            given_sku=r["given_sku"],
            url=r["url"],
            error_code=r["error_code"],
            error_column=r["error_column"],
            error_message=r["error_message"],
            product_id=r["product_id"],
            product_sku=r["product_sku"],
            already_present=r["already_present"],
        )
        for r in found
    ]


async def add_images(
    conn: asyncpg.Connection, images: Sequence[NewImage]
) -> tuple[set[str], set[str]]:
    """Add the images after each product's last one (in row order), in one statement, with
    the products locked. An image whose product is gone, or whose URL the product already
    shows (another run added it meanwhile), is not added: its file is queued for removal.
    Returns the storage keys added and those of images whose product is gone."""
    row = await conn.fetchrow(
        """WITH given AS (
             SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(
               row_number int, product_id bigint, storage_key text, content_type text,
               source_url text)),
           locked AS (
             SELECT id FROM products
             WHERE id IN (SELECT product_id FROM given) AND tenant_id = current_tenant_id()
             ORDER BY id FOR UPDATE),
           fresh AS (
             SELECT g.* FROM given g JOIN locked l ON l.id = g.product_id
             WHERE NOT EXISTS (
               SELECT 1 FROM product_images m
               WHERE m.product_id = g.product_id AND m.source_url = g.source_url
                 AND m.tenant_id = current_tenant_id())),
           added AS (
             INSERT INTO product_images (product_id, storage_key, content_type, position,
                                         source_url)
             SELECT f.product_id, f.storage_key, f.content_type,
                    COALESCE((SELECT max(m.position) FROM product_images m
                              WHERE m.product_id = f.product_id
                                AND m.tenant_id = current_tenant_id()), -1)
                    + row_number() OVER (PARTITION BY f.product_id ORDER BY f.row_number),
                    f.source_url
             FROM fresh f
             ORDER BY f.row_number
             RETURNING storage_key),
           queued AS (
             INSERT INTO file_deletions (storage_keys)
             SELECT array_agg(g.storage_key) FROM given g
             WHERE g.storage_key NOT IN (SELECT storage_key FROM fresh)
             HAVING count(*) > 0
             RETURNING cardinality(storage_keys) AS files)
         SELECT ARRAY(SELECT storage_key FROM added) AS added,
                ARRAY(SELECT g.storage_key FROM given g
                      WHERE g.product_id NOT IN (SELECT id FROM locked)) AS gone,
                (SELECT COALESCE(sum(files), 0) FROM queued) AS queued""",
        [
            {
                "row_number": i.row,
                "product_id": i.product_id,
                "storage_key": i.storage_key,
                "content_type": i.content_type,
                "source_url": i.source_url,
            }
            for i in images
        ],
    )
    return set(row["added"]), set(row["gone"])


async def remove_expired(conn: asyncpg.Connection, retention: timedelta) -> int:
    """Remove staged sources older than `retention` that no job names any more."""
    removed: int = await conn.fetchval("SELECT remove_expired_image_sources($1)", retention)
    return removed
