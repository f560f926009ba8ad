"""The queue of stored files to remove."""

from __future__ import annotations

import asyncpg


async def claim_file_deletions(
    conn: asyncpg.Connection, *, limit: int
) -> list[tuple[int, list[str]]]:
    """Up to `limit` queued file removals (each the keys one batch or clean-up queued),
    locked until the transaction ends; rows another transaction holds are skipped."""
    rows = await conn.fetch(
        """SELECT id, storage_keys FROM file_deletions WHERE tenant_id = current_tenant_id()
           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [(r["id"], r["storage_keys"]) for r in rows]


async def delete_file_deletions(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute(
        """DELETE FROM file_deletions
           WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()""",
        ids,
    )


async def has_file_deletions(conn: asyncpg.Connection) -> bool:
    """Whether stored files of the tenant wait to be removed (a run deleted some)."""
    pending: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM file_deletions WHERE tenant_id = current_tenant_id())"
    )
    return pending
