"""GraphQL input types."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from bulkops.graphql.enums import ErrorPolicy, ExecutionMode, Priority, ProductStatus


@strawberry.input
class ProductFilter:
    status: list[ProductStatus] | None = None
    brand: list[str] | None = None
    category: list[str] | None = None
    dataset_id: strawberry.ID | None = None
    sku_prefix: str | None = None
    search: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@strawberry.input(description="Exactly one of ids or filter.")
class ProductSelection:
    ids: list[strawberry.ID] | None = None
    filter: ProductFilter | None = None


@strawberry.input
class BulkOptions:
    mode: ExecutionMode = ExecutionMode.AUTO
    dry_run: bool = False
    idempotency_key: str | None = None
    priority: Priority = Priority.NORMAL
    error_policy: ErrorPolicy = ErrorPolicy.CONTINUE


@strawberry.input(description="Exactly one of ids (image ids) or products (every image of them).")
class ImageSelection:
    ids: list[strawberry.ID] | None = None
    products: ProductSelection | None = None


@strawberry.input
class IdentifierInput:
    kind: str
    value: str


@strawberry.input(
    description="One row to match: a barcode, identifiers, a SKU, or a name (with its "
    "brand). row is its number (default: its position, from 1)."
)
class MatchRowInput:
    row: int | None = None
    barcode: str | None = None
    sku: str | None = None
    name: str | None = None
    brand: str | None = None
    identifiers: list[IdentifierInput] | None = None


@strawberry.input(
    description="What updateProducts changes. A field left out is kept; brand, category "
    "and price given as null are cleared; name, status and attributes cannot be null."
)
class ProductPatch:
    name: str | None = strawberry.UNSET
    brand: str | None = strawberry.UNSET
    category: str | None = strawberry.UNSET
    status: ProductStatus | None = strawberry.UNSET
    price: Decimal | None = strawberry.UNSET
    attributes: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="merged into the existing attributes (a key given as null is removed)",
    )
    set_identifiers: list[IdentifierInput] | None = strawberry.UNSET
    remove_identifier_kinds: list[str] | None = strawberry.UNSET
