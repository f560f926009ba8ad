"""Image queries: selections of images (by id or by their products), and their owners."""

from __future__ import annotations

from typing import Any

import asyncpg

from bulkops.db.products import PRODUCT_COLUMNS, filter_sql
from bulkops.models import ProductRow
from bulkops.selection import ProductFilter


async def missing_image_ids(conn: asyncpg.Connection, ids: list[int], limit: int = 20) -> list[int]:
    """Ids that are not images of the current tenant (at most `limit` of them)."""
    rows = await conn.fetch(
        """SELECT i FROM unnest($1::bigint[]) AS i
           WHERE NOT EXISTS (SELECT 1 FROM product_images m
                             WHERE m.id = i AND m.tenant_id = current_tenant_id())
           LIMIT $2""",
        ids,
        limit,
    )
    return [r["i"] for r in rows]


async def count_images_of(conn: asyncpg.Connection, flt: ProductFilter | None) -> int:
    """How many images the products matching the filter have."""
    args: list[Any] = []
    where = filter_sql(flt, args)
    count: int = await conn.fetchval(
        f"""SELECT count(*) FROM product_images m JOIN products p ON p.id = m.product_id
            WHERE m.tenant_id = current_tenant_id() AND {where}""",
        *args,
    )
    return count


async def image_batch_ids(
    conn: asyncpg.Connection, flt: ProductFilter | None, *, after: int, limit: int
) -> list[int]:
    """The next `limit` ids of images of products matching the filter, past `after`."""
    args: list[Any] = [after, limit]
    where = filter_sql(flt, args)
    rows = await conn.fetch(
        f"""SELECT m.id FROM product_images m JOIN products p ON p.id = m.product_id
            WHERE m.id > $1 AND m.tenant_id = current_tenant_id() AND {where}
            ORDER BY m.id LIMIT $2""",
        *args,
    )
    return [r["id"] for r in rows]


async def image_ids_of_products(conn: asyncpg.Connection, product_ids: list[int]) -> list[int]:
    """The ids of every image of the given products, in id order."""
    rows = await conn.fetch(
        """SELECT id FROM product_images
           WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
           ORDER BY id""",
        product_ids,
    )
    return [r["id"] for r in rows]


async def owners_of_images(conn: asyncpg.Connection, image_ids: list[int]) -> list[ProductRow]:
    """The products the given images belong to, in id order."""
    rows = await conn.fetch(
        f"""SELECT {PRODUCT_COLUMNS} FROM products
            WHERE tenant_id = current_tenant_id() AND id IN (
              SELECT product_id FROM product_images
              WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id())
            ORDER BY id""",
        image_ids,
    )
    return [ProductRow.from_row(r) for r in rows]
