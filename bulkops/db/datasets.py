"""Dataset queries."""

from __future__ import annotations

import asyncpg

from bulkops.models import DatasetRow

_SELECT = """SELECT d.id, d.name, d.created_at,
                    (SELECT count(*) FROM dataset_products dp WHERE dp.dataset_id = d.id)
                      AS product_count
             FROM datasets d"""


async def create_dataset(conn: asyncpg.Connection, name: str) -> DatasetRow | None:
    """The new dataset, or None when the tenant has one of that name already."""
    row = await conn.fetchrow(
        """INSERT INTO datasets (name) VALUES ($1)
           ON CONFLICT (tenant_id, name) DO NOTHING
           RETURNING id, name, created_at, 0::bigint AS product_count""",
        name,
    )
    return DatasetRow.from_row(row) if row else None


async def get_datasets(conn: asyncpg.Connection, ids: list[int]) -> list[DatasetRow]:
    rows = await conn.fetch(
        f"{_SELECT} WHERE d.id = ANY($1::bigint[]) AND d.tenant_id = current_tenant_id()"
        " ORDER BY d.id",
        ids,
    )
    return [DatasetRow.from_row(r) for r in rows]


async def dataset_exists(conn: asyncpg.Connection, dataset_id: int, *, lock: bool = False) -> bool:
    """Whether the tenant has this dataset; with `lock`, it stays until the transaction ends."""
    suffix = " FOR SHARE" if lock else ""
    found = await conn.fetchval(
        "SELECT 1 FROM datasets WHERE id = $1 AND tenant_id = current_tenant_id()" + suffix,
        dataset_id,
    )
    return found is not None


async def list_datasets(conn: asyncpg.Connection, *, after: int, limit: int) -> list[DatasetRow]:
    rows = await conn.fetch(
        f"{_SELECT} WHERE d.id > $1 AND d.tenant_id = current_tenant_id() ORDER BY d.id LIMIT $2",
        after,
        limit,
    )
    return [DatasetRow.from_row(r) for r in rows]


async def count_datasets(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM datasets WHERE tenant_id = current_tenant_id()"
    )
    return count
