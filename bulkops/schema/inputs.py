"""GraphQL input types."""

from __future__ import annotations

from datetime import datetime

import strawberry

from bulkops.schema.enums import ErrorPolicy, ExecutionMode, Priority, ProductStatus


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
