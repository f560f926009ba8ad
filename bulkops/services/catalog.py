"""Reading products and datasets, and creating a dataset (the bulk changes are elsewhere)."""

from __future__ import annotations

from collections import defaultdict

import asyncpg

from bulkops.db import datasets as datasets_db
from bulkops.db import products as products_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError
from bulkops.models import DatasetRow, ImageRow, ProductRow
from bulkops.selection import ProductFilter
from bulkops.services.pages import Page

DATASET_NAME_MAX = 200


async def get_product(pool: asyncpg.Pool, tenant_id: str, product_id: int) -> ProductRow | None:
    """The tenant's product, or None."""
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await products_db.products_by_ids(conn, [product_id])
    return rows[0] if rows else None


async def list_products(
    pool: asyncpg.Pool, tenant_id: str, flt: ProductFilter | None, *, after: int, limit: int
) -> Page[ProductRow]:
    """The products the filter selects past id `after`, in id order."""
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await products_db.list_products(conn, flt, after=after, limit=limit + 1)
        total = await products_db.count_filter(conn, flt)
    return Page.of(rows, limit=limit, total=total)


async def get_dataset(pool: asyncpg.Pool, tenant_id: str, dataset_id: int) -> DatasetRow | None:
    """The tenant's dataset, or None."""
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await datasets_db.get_datasets(conn, [dataset_id])
    return rows[0] if rows else None


async def list_datasets(
    pool: asyncpg.Pool, tenant_id: str, *, after: int, limit: int
) -> Page[DatasetRow]:
    """The tenant's datasets past id `after`, in id order."""
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await datasets_db.list_datasets(conn, after=after, limit=limit + 1)
        total = await datasets_db.count_datasets(conn)
    return Page.of(rows, limit=limit, total=total)


async def create_dataset(pool: asyncpg.Pool, tenant_id: str, name: str) -> DatasetRow:
    """A new, empty dataset named `name` without its outer spaces; an InputError when the
    name is empty or too long (INVALID_NAME) or the tenant has it already (DUPLICATE_NAME)."""
    clean = name.strip()
    if not clean or len(clean) > DATASET_NAME_MAX:
        raise InputError(
            f"A dataset name has 1 to {DATASET_NAME_MAX} characters.",
            code="INVALID_NAME",
            field=["name"],
        )
    async with tenant_transaction(pool, tenant_id) as conn:
        row = await datasets_db.create_dataset(conn, clean)
    if row is None:
        raise InputError(
            f"A dataset named {clean!r} exists already.", code="DUPLICATE_NAME", field=["name"]
        )
    return row


async def identifiers_of(
    pool: asyncpg.Pool, tenant_id: str, product_ids: list[int]
) -> dict[int, list[tuple[str, str]]]:
    """The (kind, value) identifiers of each product that has any."""
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await products_db.identifiers_for(conn, product_ids)
    grouped: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for product_id, kind, value in rows:
        grouped[product_id].append((kind, value))
    return grouped


async def images_of(
    pool: asyncpg.Pool, tenant_id: str, product_ids: list[int]
) -> dict[int, list[ImageRow]]:
    """The images of each product that has any, in their order."""
    async with tenant_transaction(pool, tenant_id) as conn:
        rows = await products_db.images_for(conn, product_ids)
    grouped: dict[int, list[ImageRow]] = defaultdict(list)
    for row in rows:
        grouped[row.product_id].append(row)
    return grouped


async def datasets_of(
    pool: asyncpg.Pool, tenant_id: str, product_ids: list[int]
) -> dict[int, list[DatasetRow]]:
    """The datasets each product is in, for the products in any."""
    async with tenant_transaction(pool, tenant_id) as conn:
        pairs = await products_db.dataset_ids_for(conn, product_ids)
        datasets = {
            d.id: d for d in await datasets_db.get_datasets(conn, sorted({d for _, d in pairs}))
        }
    grouped: dict[int, list[DatasetRow]] = defaultdict(list)
    for product_id, dataset_id in pairs:
        grouped[product_id].append(datasets[dataset_id])
    return grouped
