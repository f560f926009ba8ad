"""Products, their images and identifiers, and datasets."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

import strawberry
from strawberry.scalars import JSON

from bulkops.graphql.enums import ProductStatus
from bulkops.graphql.types.common import Info
from bulkops.models import DatasetRow, ImageRow, ProductRow


@strawberry.type
class Identifier:
    kind: str
    value: str


@strawberry.type
class Image:
    id: strawberry.ID
    url: str
    content_type: str
    position: int

    @classmethod
    def from_row(cls, row: ImageRow) -> Image:
        return cls(
            id=strawberry.ID(str(row.id)),
            url=f"/files/{row.storage_key}",
            content_type=row.content_type,
            position=row.position,
        )


@strawberry.type
class Dataset:
    id: strawberry.ID
    name: str
    product_count: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: DatasetRow) -> Dataset:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            product_count=row.product_count,
            created_at=row.created_at,
        )


@strawberry.type
class Product:
    id: strawberry.ID
    sku: str
    barcode: str | None
    name: str
    brand: str | None
    category: str | None
    description: str | None
    status: ProductStatus
    price: Decimal | None
    attributes: JSON
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: ProductRow) -> Product:
        return cls(
            id=strawberry.ID(str(row.id)),
            sku=row.sku,
            barcode=row.barcode,
            name=row.name,
            brand=row.brand,
            category=row.category,
            description=row.description,
            status=ProductStatus(row.status),
            price=row.price,
            attributes=cast(JSON, row.attributes),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @strawberry.field
    async def identifiers(self, info: Info) -> list[Identifier]:
        pairs = await info.context.loaders.identifiers.load(int(self.id))
        return [Identifier(kind=k, value=v) for k, v in pairs]

    @strawberry.field
    async def images(self, info: Info) -> list[Image]:
        return [Image.from_row(r) for r in await info.context.loaders.images.load(int(self.id))]

    @strawberry.field
    async def datasets(self, info: Info) -> list[Dataset]:
        rows = await info.context.loaders.datasets_of_product.load(int(self.id))
        return [Dataset.from_row(r) for r in rows]
