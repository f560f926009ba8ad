"""Product queries: the filter as SQL, selection counting and batching, reads."""

from __future__ import annotations

from typing import Any

import asyncpg

from bulkops.models import ImageRow, ProductRow
from bulkops.selection import ProductFilter

PRODUCT_COLUMNS = (
    "id, sku, barcode, name, brand, category, description, status, price, attributes, "
    "created_at, updated_at"
)


def like_literal(text: str) -> str:
    """`text` as a LIKE pattern that matches exactly it: its `%`, `_` and `\\` (the
    default escape character) are escaped, so that a client's text is never a wildcard."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_sql(flt: ProductFilter | None, args: list[Any], alias: str = "p") -> str:
    """The WHERE clause of a product filter; appends its parameters to `args`."""
    clauses = [f"{alias}.tenant_id = current_tenant_id()"]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if flt is not None:
        if flt.status:
            clauses.append(f"{alias}.status = ANY({param(list(flt.status))}::text[])")
        if flt.brand:
            clauses.append(f"{alias}.brand = ANY({param(list(flt.brand))}::text[])")
        if flt.category:
            clauses.append(f"{alias}.category = ANY({param(list(flt.category))}::text[])")
        if flt.dataset_id is not None:
            clauses.append(
                f"EXISTS (SELECT 1 FROM dataset_products dp WHERE dp.product_id = {alias}.id"
                f" AND dp.dataset_id = {param(flt.dataset_id)})"
            )
        if flt.sku_prefix:
            clauses.append(f"{alias}.sku LIKE {param(like_literal(flt.sku_prefix) + '%')}")
        if flt.search:
            clauses.append(f"{alias}.name ILIKE {param('%' + like_literal(flt.search) + '%')}")
        if flt.created_after is not None:
            clauses.append(f"{alias}.created_at > {param(flt.created_after)}")
        if flt.created_before is not None:
            clauses.append(f"{alias}.created_at < {param(flt.created_before)}")
    return " AND ".join(clauses)


async def count_filter(conn: asyncpg.Connection, flt: ProductFilter | None) -> int:
    args: list[Any] = []
    where = filter_sql(flt, args)
    count: int = await conn.fetchval(f"SELECT count(*) FROM products p WHERE {where}", *args)
    return count


async def count_ids(conn: asyncpg.Connection, ids: list[int]) -> int:
    """How many of `ids` are products of the current tenant: one ordered walk of the primary
    key, far cheaper for 100,000 ids than an anti-join that probes it once per id."""
    found: int = await conn.fetchval(
        """SELECT count(*) FROM products
           WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()""",
        ids,
    )
    return found


async def missing_ids(conn: asyncpg.Connection, ids: list[int], limit: int = 20) -> list[int]:
    """Ids that are not products of the current tenant (at most `limit` of them)."""
    rows = await conn.fetch(
        """SELECT i FROM unnest($1::bigint[]) AS i
           WHERE NOT EXISTS (SELECT 1 FROM products p
                             WHERE p.id = i AND p.tenant_id = current_tenant_id())
           LIMIT $2""",
        ids,
        limit,
    )
    return [r["i"] for r in rows]


async def filter_batch_ids(
    conn: asyncpg.Connection, flt: ProductFilter | None, *, after: int, limit: int
) -> list[int]:
    """The next `limit` ids matching the filter past `after`, in key order, read as one
    array value (a batch's ids: thousands of them, cheaper than as many rows)."""
    args: list[Any] = [after, limit]
    where = filter_sql(flt, args)
    ids: list[int] = await conn.fetchval(
        f"""SELECT ARRAY(SELECT p.id FROM products p WHERE p.id > $1 AND {where}
                         ORDER BY p.id LIMIT $2)""",
        *args,
    )
    return ids


async def list_products(
    conn: asyncpg.Connection, flt: ProductFilter | None, *, after: int, limit: int
) -> list[ProductRow]:
    args: list[Any] = [after, limit]
    where = filter_sql(flt, args)
    rows = await conn.fetch(
        f"SELECT {PRODUCT_COLUMNS} FROM products p WHERE p.id > $1 AND {where}"
        " ORDER BY p.id LIMIT $2",
        *args,
    )
    return [ProductRow.from_row(r) for r in rows]


async def products_by_ids(conn: asyncpg.Connection, ids: list[int]) -> list[ProductRow]:
    rows = await conn.fetch(
        f"SELECT {PRODUCT_COLUMNS} FROM products"
        " WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id() ORDER BY id",
        ids,
    )
    return [ProductRow.from_row(r) for r in rows]


async def identifiers_for(
    conn: asyncpg.Connection, product_ids: list[int]
) -> list[tuple[int, str, str]]:
    rows = await conn.fetch(
        """SELECT product_id, kind, value FROM product_identifiers
           WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
           ORDER BY product_id, kind""",
        product_ids,
    )
    return [(r["product_id"], r["kind"], r["value"]) for r in rows]


async def images_for(conn: asyncpg.Connection, product_ids: list[int]) -> list[ImageRow]:
    rows = await conn.fetch(
        """SELECT id, product_id, storage_key, content_type, position FROM product_images
           WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
           ORDER BY product_id, position, id""",
        product_ids,
    )
    return [ImageRow.from_row(r) for r in rows]


async def dataset_ids_for(
    conn: asyncpg.Connection, product_ids: list[int]
) -> list[tuple[int, int]]:
    rows = await conn.fetch(
        """SELECT product_id, dataset_id FROM dataset_products
           WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
           ORDER BY product_id, dataset_id""",
        product_ids,
    )
    return [(r["product_id"], r["dataset_id"]) for r in rows]
