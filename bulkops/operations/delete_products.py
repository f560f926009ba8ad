"""deleteProducts: remove products with their images, stored files and dataset membership."""

from __future__ import annotations

from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    Counter,
    NoParams,
    Operation,
    Thresholds,
)


class DeleteProducts(Operation[NoParams]):
    name = "deleteProducts"
    description = "Delete products, their images (and stored files) and dataset membership."
    thresholds = Thresholds(inline_threshold=1000, inline_limit=10_000, batch_size=5000)
    params_model = NoParams
    counters = (Counter("deletedImages"), Counter("removedFromDatasets"))
    deletes_files = True

    async def apply_batch(
        self, ctx: BatchContext, params: NoParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        # Stored files are queued for removal in the same transaction (one queue row for
        # the batch) and removed after it commits: the rows and the files go together,
        # whenever a worker dies.
        row = await conn.fetchrow(
            """WITH img AS (
                 DELETE FROM product_images
                 WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                 RETURNING storage_key),
               queued AS (
                 INSERT INTO file_deletions (storage_keys)
                 SELECT array_agg(storage_key) FROM img HAVING count(*) > 0
                 RETURNING cardinality(storage_keys) AS files),
               ds AS (
                 DELETE FROM dataset_products
                 WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                 RETURNING 1),
               idents AS (
                 DELETE FROM product_identifiers
                 WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                 RETURNING 1),
               gone AS (
                 DELETE FROM products
                 WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                 RETURNING id)
             SELECT (SELECT COALESCE(sum(files), 0) FROM queued) AS images,
                    (SELECT count(*) FROM ds) AS memberships,
                    (SELECT count(*) FROM idents) AS identifiers,
                    ARRAY(SELECT id FROM gone ORDER BY id) AS deleted""",
            ids,
        )
        deleted: list[int] = row["deleted"]
        # A product already gone was deleted by someone else: nothing left to do.
        return BatchOutcome(
            succeeded=len(deleted),
            skipped=len(ids) - len(deleted),
            counters={"deletedImages": row["images"], "removedFromDatasets": row["memberships"]},
            changed_ids=deleted,
        )
