"""Export files: their rows, and how far their writing has come."""

from __future__ import annotations

from typing import Any

import asyncpg

from bulkops.models import ExportFileRow


async def insert_file(
    conn: asyncpg.Connection,
    file_id: str,
    *,
    storage_key: str,
    fmt: str,
    size: int,
    link_seconds: float,
) -> ExportFileRow:
    row = await conn.fetchrow(
        """INSERT INTO export_files (id, storage_key, format, bytes, expires_at)
           VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5))
           RETURNING *""",
        file_id,
        storage_key,
        fmt,
        size,
        link_seconds,
    )
    return ExportFileRow.from_row(row)


async def lock_file(conn: asyncpg.Connection, file_id: str) -> ExportFileRow | None:
    """The file's row, locked until the transaction ends; None when it is gone."""
    row = await conn.fetchrow(
        """SELECT * FROM export_files WHERE id = $1 AND tenant_id = current_tenant_id()
           FOR UPDATE""",
        file_id,
    )
    return ExportFileRow.from_row(row) if row else None


async def record_batch(
    conn: asyncpg.Connection,
    file_id: str,
    *,
    rows: int,
    size: int,
    last_id: int,
    link_seconds: float,
) -> None:
    """Add a batch's rows, the file's new size and the batch's last id. The link's expiry
    moves with every batch, so that it counts from the end of the writing."""
    await conn.execute(
        """UPDATE export_files SET rows = rows + $2, bytes = $3, last_id = $4,
             expires_at = clock_timestamp() + make_interval(secs => $5)
           WHERE id = $1 AND tenant_id = current_tenant_id()""",
        file_id,
        rows,
        size,
        last_id,
        link_seconds,
    )


async def get_files(conn: asyncpg.Connection, file_ids: list[str]) -> list[ExportFileRow]:
    rows = await conn.fetch(
        """SELECT * FROM export_files
           WHERE id = ANY($1::uuid[]) AND tenant_id = current_tenant_id()""",
        file_ids,
    )
    return [ExportFileRow.from_row(r) for r in rows]


async def remove_expired(conn: asyncpg.Connection, job_retention: Any) -> int:
    """Queue every expired export file for removal (all tenants); how many were queued."""
    queued: int = await conn.fetchval("SELECT remove_expired_exports($1)", job_retention)
    return queued
