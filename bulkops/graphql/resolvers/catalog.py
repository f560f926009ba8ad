"""Queries and mutations on products and datasets (not the bulk ones)."""

from __future__ import annotations

import strawberry

from bulkops.db import datasets as datasets_db
from bulkops.db import products as products_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError
from bulkops.graphql.inputs import ProductFilter
from bulkops.graphql.paging import int_cursor, page_size
from bulkops.graphql.types.catalog import (
    Dataset,
    DatasetConnection,
    DatasetEdge,
    Product,
    ProductConnection,
    ProductEdge,
)
from bulkops.graphql.types.common import Info, PageInfo, encode_cursor
from bulkops.graphql.types.results import CreateDatasetResult, Rejected
from bulkops.selection import ProductFilter as FilterModel
from bulkops.selection import parse_id


def to_filter(flt: ProductFilter | None, field: list[str]) -> FilterModel | None:
    if flt is None:
        return None
    dataset_id = (
        parse_id(flt.dataset_id, [*field, "datasetId"]) if flt.dataset_id is not None else None
    )
    return FilterModel(
        status=tuple(s.value for s in flt.status) if flt.status is not None else None,
        brand=tuple(flt.brand) if flt.brand is not None else None,
        category=tuple(flt.category) if flt.category is not None else None,
        dataset_id=dataset_id,
        sku_prefix=flt.sku_prefix,
        search=flt.search,
        created_after=flt.created_after,
        created_before=flt.created_before,
    )


def _id_or_none(value: strawberry.ID) -> int | None:
    try:
        return parse_id(value, ["id"])
    except InputError:
        return None


async def product(info: Info, id: strawberry.ID) -> Product | None:
    product_id = _id_or_none(id)
    if product_id is None:
        return None
    async with tenant_transaction(info.context.state["pool"], info.context.tenant) as conn:
        rows = await products_db.products_by_ids(conn, [product_id])
    return Product.from_row(rows[0]) if rows else None


async def products(
    info: Info, filter: ProductFilter | None, first: int | None, after: str | None
) -> ProductConnection:
    size = page_size(first)
    start = int_cursor(after, "product")
    try:
        flt = to_filter(filter, ["filter"])
    except InputError as exc:
        from strawberry.exceptions import StrawberryGraphQLError

        raise StrawberryGraphQLError(
            exc.message, extensions={"code": exc.code, "field": exc.field}
        ) from None
    async with tenant_transaction(info.context.state["pool"], info.context.tenant) as conn:
        rows = await products_db.list_products(conn, flt, after=start, limit=size + 1)
        total = await products_db.count_filter(conn, flt)
    edges = [
        ProductEdge(cursor=encode_cursor("product", r.id), node=Product.from_row(r))
        for r in rows[:size]
    ]
    return ProductConnection(
        edges=edges,
        page_info=PageInfo.of(edges, has_next=len(rows) > size, has_previous=start > 0),
        total_count=total,
    )


async def dataset(info: Info, id: strawberry.ID) -> Dataset | None:
    dataset_id = _id_or_none(id)
    if dataset_id is None:
        return None
    async with tenant_transaction(info.context.state["pool"], info.context.tenant) as conn:
        rows = await datasets_db.get_datasets(conn, [dataset_id])
    return Dataset.from_row(rows[0]) if rows else None


async def datasets(info: Info, first: int | None, after: str | None) -> DatasetConnection:
    size = page_size(first)
    start = int_cursor(after, "dataset")
    async with tenant_transaction(info.context.state["pool"], info.context.tenant) as conn:
        rows = await datasets_db.list_datasets(conn, after=start, limit=size + 1)
        total = await datasets_db.count_datasets(conn)
    edges = [
        DatasetEdge(cursor=encode_cursor("dataset", r.id), node=Dataset.from_row(r))
        for r in rows[:size]
    ]
    return DatasetConnection(
        edges=edges,
        page_info=PageInfo.of(edges, has_next=len(rows) > size, has_previous=start > 0),
        total_count=total,
    )


async def create_dataset(info: Info, name: str) -> CreateDatasetResult:
    clean = name.strip()
    if not clean or len(clean) > 200:
        return Rejected(
            code="INVALID_NAME",
            message="A dataset name has 1 to 200 characters.",
            field=["name"],
        )
    async with tenant_transaction(info.context.state["pool"], info.context.tenant) as conn:
        row = await datasets_db.create_dataset(conn, clean)
    if row is None:
        return Rejected(
            code="DUPLICATE_NAME",
            message=f"A dataset named {clean!r} exists already.",
            field=["name"],
        )
    return Dataset.from_row(row)
