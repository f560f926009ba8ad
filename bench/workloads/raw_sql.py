"""The raw-SQL limits of W1-W3 (and W6's reference UPDATE): each operation's own set-based
statement, copied from bulkops/operations/ (keep them in step), over the same products in
the same order, 5,000 per transaction, each transaction also updating a progress row.

They run on one connection acting as `bulkops_app` under row-level security, setting the
tenant in every transaction, as the worker does. What they leave out is the API, the queue,
the job row's lock, lease and counters, the ids stored with a job, publishing, and queueing
the stored files for removal (DELETE returns their keys instead, which a script must then
remove itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from bench.catalog import Catalog

BATCH = 5000

SET_TENANT = "SELECT set_config('bulkops.tenant_id', $1, true)"
START_PROGRESS = """INSERT INTO jobs (operation, status, selection, total, started_at)
                    VALUES ($1, 'RUNNING', '{}'::jsonb, $2, clock_timestamp()) RETURNING id"""
PROGRESS = """UPDATE jobs SET cursor = $2, processed = processed + $3, succeeded = succeeded + $4,
                skipped = skipped + $3 - $4, version = version + 1,
                updated_at = clock_timestamp()
              WHERE id = $1 AND tenant_id = current_tenant_id()"""
# DeleteProducts.apply_batch, returning the storage keys (which a raw script must remove
# itself) instead of queueing them in file_deletions.
DELETE = """WITH img AS (
              DELETE FROM product_images
              WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
              RETURNING storage_key),
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
          SELECT (SELECT count(*) FROM gone) AS changed,
                 ARRAY(SELECT storage_key FROM img) AS keys"""
# filter_batch_ids with {status: [...]}, and SetProductStatus.apply_batch.
NEXT_BY_STATUS = """SELECT p.id FROM products p
                    WHERE p.id > $1 AND p.tenant_id = current_tenant_id()
                      AND p.status = ANY($3::text[])
                    ORDER BY p.id LIMIT $2"""
SET_STATUS = """WITH target AS (
                  SELECT id, status FROM products
                  WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                  FOR UPDATE),
                changed AS (
                  UPDATE products p SET status = $2, updated_at = now()
                  FROM target t WHERE p.id = t.id AND t.status <> $2
                  RETURNING p.id)
              SELECT cardinality(ARRAY(SELECT id FROM changed)) AS changed"""
# AddProductsToDataset.apply_batch, with its dataset lock.
LOCK_DATASET = """SELECT 1 FROM datasets WHERE id = $1 AND tenant_id = current_tenant_id()
                  FOR SHARE"""
ADD = """WITH found AS (
           SELECT id FROM products
           WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()),
         added AS (
           INSERT INTO dataset_products (dataset_id, product_id)
           SELECT $2, id FROM found ORDER BY id
           ON CONFLICT DO NOTHING
           RETURNING product_id)
       SELECT (SELECT count(*) FROM added) AS changed"""


def chunks(ids: Sequence[int], size: int = BATCH) -> list[list[int]]:
    """`ids` in batches of `size`, in order."""
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


async def _batch(
    conn: asyncpg.Connection, catalog: Catalog, job_id: str, sql: str, *args: Any
) -> Any:
    """One transaction: the tenant, the statement, the progress row."""
    async with conn.transaction():
        await conn.execute(SET_TENANT, catalog.tenant.id)
        row = await conn.fetchrow(sql, *args)
        ids: list[int] = args[0]
        await conn.execute(PROGRESS, job_id, ids[-1], len(ids), row["changed"])
    return row


async def delete_batches(
    conn: asyncpg.Connection, catalog: Catalog, job_id: str
) -> tuple[int, int]:
    """W1: every product of `delete_ids`; (batches, products deleted)."""
    changed, batches = 0, chunks(catalog.delete_ids)
    for ids in batches:
        row = await _batch(conn, catalog, job_id, DELETE, ids)
        changed += row["changed"]
    return len(batches), changed


async def status_batches(
    conn: asyncpg.Connection, catalog: Catalog, job_id: str
) -> tuple[int, int]:
    """W2: every ARCHIVED product made ACTIVE, walking the filter in id order."""
    cursor, batches, changed = 0, 0, 0
    while True:
        async with conn.transaction():
            await conn.execute(SET_TENANT, catalog.tenant.id)
            ids = [r["id"] for r in await conn.fetch(NEXT_BY_STATUS, cursor, BATCH, ["ARCHIVED"])]
            if not ids:
                return batches, changed
            row = await conn.fetchrow(SET_STATUS, ids, "ACTIVE")
            await conn.execute(PROGRESS, job_id, ids[-1], len(ids), row["changed"])
        cursor, batches, changed = ids[-1], batches + 1, changed + row["changed"]
        if len(ids) < BATCH:
            return batches, changed


async def add_batches(conn: asyncpg.Connection, catalog: Catalog, job_id: str) -> tuple[int, int]:
    """W3: every product of `add_ids` added to the dataset, with the operation's lock."""
    changed, batches = 0, chunks(catalog.add_ids)
    for ids in batches:
        async with conn.transaction():
            await conn.execute(SET_TENANT, catalog.tenant.id)
            await conn.fetchval(LOCK_DATASET, catalog.dataset_id)
            row = await conn.fetchrow(ADD, ids, catalog.dataset_id)
            await conn.execute(PROGRESS, job_id, ids[-1], len(ids), row["changed"])
        changed += row["changed"]
    return len(batches), changed
