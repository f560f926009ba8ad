"""addProductsToDataset and removeProductsFromDataset."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel

from bulkops.db.datasets import dataset_exists
from bulkops.errors import NotFoundError
from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    JobAborted,
    Operation,
    Thresholds,
    not_found_failures,
)


class DatasetParams(BaseModel):
    dataset_id: int


class _DatasetOperation(Operation[DatasetParams]):
    params_model = DatasetParams
    thresholds = Thresholds(inline_threshold=1000, inline_limit=10_000, batch_size=5000)

    async def check(self, conn: asyncpg.Connection, params: DatasetParams) -> None:
        if not await dataset_exists(conn, params.dataset_id):
            raise NotFoundError(f"Dataset {params.dataset_id} does not exist.", field=["datasetId"])

    async def _lock_dataset(self, conn: asyncpg.Connection, params: DatasetParams) -> None:
        if not await dataset_exists(conn, params.dataset_id, lock=True):
            raise JobAborted(f"Dataset {params.dataset_id} was deleted.", code="DATASET_NOT_FOUND")


class AddProductsToDataset(_DatasetOperation):
    name = "addProductsToDataset"
    description = "Add products to a dataset; those already in it are skipped and counted."

    async def apply_batch(
        self, ctx: BatchContext, params: DatasetParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        await self._lock_dataset(conn, params)
        row = await conn.fetchrow(
            """WITH found AS (
                 SELECT id FROM products
                 WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()),
               added AS (
                 INSERT INTO dataset_products (dataset_id, product_id)
                 SELECT $2, id FROM found ORDER BY id
                 ON CONFLICT DO NOTHING
                 RETURNING product_id)
             SELECT ARRAY(SELECT id FROM found) AS found,
                    ARRAY(SELECT product_id FROM added ORDER BY product_id) AS added""",
            ids,
            params.dataset_id,
        )
        found: set[int] = set(row["found"])
        added: list[int] = row["added"]
        errors = not_found_failures(ids, found)
        return BatchOutcome(
            succeeded=len(added),
            failed=len(errors),
            skipped=len(found) - len(added),
            errors=errors,
            changed_ids=added,
        )


class RemoveProductsFromDataset(_DatasetOperation):
    name = "removeProductsFromDataset"
    description = "Remove products from a dataset; those not in it are skipped and counted."

    async def apply_batch(
        self, ctx: BatchContext, params: DatasetParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        await self._lock_dataset(conn, params)
        row = await conn.fetchrow(
            """WITH found AS (
                 SELECT id FROM products
                 WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()),
               removed AS (
                 DELETE FROM dataset_products
                 WHERE dataset_id = $2 AND product_id = ANY($1::bigint[])
                   AND tenant_id = current_tenant_id()
                 RETURNING product_id)
             SELECT ARRAY(SELECT id FROM found) AS found,
                    ARRAY(SELECT product_id FROM removed ORDER BY product_id) AS removed""",
            ids,
            params.dataset_id,
        )
        found: set[int] = set(row["found"])
        removed: list[int] = row["removed"]
        errors = not_found_failures(ids, found)
        return BatchOutcome(
            succeeded=len(removed),
            failed=len(errors),
            skipped=len(found) - len(removed),
            errors=errors,
            changed_ids=removed,
        )
