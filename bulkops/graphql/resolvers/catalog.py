"""Queries and mutations on products and datasets (not the bulk ones)."""

from __future__ import annotations

import strawberry
from strawberry.exceptions import StrawberryGraphQLError

from bulkops.errors import InputError
from bulkops.graphql.inputs import ProductFilter
from bulkops.graphql.paging import int_cursor, page_size
from bulkops.graphql.types.catalog import Dataset, Product
from bulkops.graphql.types.common import Connection, Info, connection, encode_cursor
from bulkops.graphql.types.results import CreateDatasetResult, Rejected
from bulkops.selection import ProductFilter as FilterModel
from bulkops.selection import parse_id
from bulkops.services import catalog


def to_filter(flt: ProductFilter | None, field: list[str]) -> FilterModel | None:
    if flt is None:
        return None
    dataset_id = (
        parse_id(flt.dataset_id, [*field, "datasetId"]) if flt.dataset_id is not None else None
    )
    try:
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
    except InputError as exc:
        # The model names the field within the filter; the client knows it by its path.
        raise InputError(exc.message, code=exc.code, field=[*field, *exc.field]) from None


def _id_or_none(value: strawberry.ID) -> int | None:
    try:
        return parse_id(value, ["id"])
    except InputError:
        return None


async def product(info: Info, id: strawberry.ID) -> Product | None:
    product_id = _id_or_none(id)
    if product_id is None:
        return None
    row = await catalog.get_product(info.context.services.pool, info.context.tenant, product_id)
    return Product.from_row(row) if row else None


async def products(
    info: Info, filter: ProductFilter | None, first: int | None, after: str | None
) -> Connection[Product]:
    size = page_size(first)
    start = int_cursor(after, "product")
    try:
        flt = to_filter(filter, ["filter"])
    except InputError as exc:
        raise StrawberryGraphQLError(
            exc.message, extensions={"code": exc.code, "field": exc.field}
        ) from None
    page = await catalog.list_products(
        info.context.services.pool, info.context.tenant, flt, after=start, limit=size
    )
    return connection(
        page.rows,
        cursor=lambda r: encode_cursor("product", r.id),
        node=Product.from_row,
        has_next=page.has_next,
        has_previous=start > 0,
        total=page.total,
    )


async def dataset(info: Info, id: strawberry.ID) -> Dataset | None:
    dataset_id = _id_or_none(id)
    if dataset_id is None:
        return None
    row = await catalog.get_dataset(info.context.services.pool, info.context.tenant, dataset_id)
    return Dataset.from_row(row) if row else None


async def datasets(info: Info, first: int | None, after: str | None) -> Connection[Dataset]:
    size = page_size(first)
    start = int_cursor(after, "dataset")
    page = await catalog.list_datasets(
        info.context.services.pool, info.context.tenant, after=start, limit=size
    )
    return connection(
        page.rows,
        cursor=lambda r: encode_cursor("dataset", r.id),
        node=Dataset.from_row,
        has_next=page.has_next,
        has_previous=start > 0,
        total=page.total,
    )


async def create_dataset(info: Info, name: str) -> CreateDatasetResult:
    try:
        row = await catalog.create_dataset(info.context.services.pool, info.context.tenant, name)
    except InputError as exc:
        return Rejected(code=exc.code, message=exc.message, field=exc.field or None)
    return Dataset.from_row(row)
