"""A job's explicit ids, stored in chunks: walked past any cursor in key order, every id
once, across chunk boundaries, for any batch size; each tenant sees only its own."""

from __future__ import annotations

import random

import asyncpg

from bulkops.config import Settings
from bulkops.db import job_runs
from bulkops.db import jobs as jobs_db
from bulkops.db.pool import create_pool, tenant_transaction
from tests.support import Tenant


async def next_ids(conn: asyncpg.Connection, job_id: str, cursor: int, batch: int) -> list[int]:
    """The job's next `batch` ids past `cursor`, read as the runner reads them."""
    chunks = await conn.fetchval("SELECT job_item_chunks_past($1, $2, $3)", job_id, cursor, batch)
    return job_runs.ids_past(chunks, cursor, batch)


async def walk(conn: asyncpg.Connection, job_id: str, batch: int) -> list[list[int]]:
    """The job's ids in batches, as the runner reads them (the cursor is the last id)."""
    batches: list[list[int]] = []
    cursor = 0
    while True:
        ids = await next_ids(conn, job_id, cursor, batch)
        if not ids:
            return batches
        batches.append(ids)
        cursor = ids[-1]


async def test_ids_are_walked_in_order_once_across_chunks(
    settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    rng = random.Random(7)
    ids = sorted(rng.sample(range(1, 10_000_000), 12_345))
    pool = await create_pool(settings.database_url or "", role=settings.app_role)
    try:
        async with tenant_transaction(pool, tenant.id) as conn:
            job = await jobs_db.insert_job(
                conn,
                operation="setProductStatus",
                priority="NORMAL",
                error_policy="CONTINUE",
                params={},
                selection={"ids": True},
                total=len(ids),
                item_ids=ids,
            )
            for batch in (777, 5000, 5001, 20_000):
                batches = await walk(conn, job.id, batch)
                assert [i for b in batches for i in b] == ids, batch
                assert all(len(b) == batch for b in batches[:-1]), batch
            # From a cursor between two stored ids, and past the last one.
            _, after = await job_runs.lock_job_batch(conn, job.id, items=3)
            assert after == ids[:3]
            assert await next_ids(conn, job.id, ids[5000] + 1, 4) == ids[5001:5005]
            assert await next_ids(conn, job.id, ids[-1], 4) == []
            copy = await jobs_db.insert_job(
                conn,
                operation="setProductStatus",
                priority="NORMAL",
                error_policy="CONTINUE",
                params={},
                selection={"ids": True},
                total=0,
            )
            assert await jobs_db.copy_job_items(conn, job.id, copy.id) == len(ids)
            assert [i for b in await walk(conn, copy.id, 5000) for i in b] == ids
        async with tenant_transaction(pool, other_tenant.id) as conn:
            assert await walk(conn, job.id, 5000) == []
    finally:
        await pool.close()
