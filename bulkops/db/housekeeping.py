"""The workers' periodic queries: jobs no worker holds, expired rows, files to purge. Each
calls a SECURITY DEFINER function of the migrations, since it spans every tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg


@dataclass(frozen=True)
class UnheldJob:
    """An unfinished job whose lease has lapsed, or that no worker ever took."""

    id: str
    tenant_id: str
    priority: str

    @classmethod
    def from_row(cls, row: Any) -> UnheldJob:
        return cls(id=str(row["id"]), tenant_id=str(row["tenant_id"]), priority=row["priority"])


async def unheld_jobs(conn: asyncpg.Connection, stale: timedelta) -> list[UnheldJob]:
    """Up to 1,000 unfinished jobs, least recently changed first, that no live lease holds
    and that have not changed for `stale`."""
    rows = await conn.fetch("SELECT id, tenant_id, priority FROM unheld_jobs($1, 1000)", stale)
    return [UnheldJob.from_row(row) for row in rows]


async def remove_expired(conn: asyncpg.Connection, retention: timedelta) -> int:
    """Remove finished jobs older than `retention`, with their items and errors, and
    expired idempotency keys; returns how many jobs were removed."""
    removed: int = await conn.fetchval("SELECT remove_expired($1)", retention)
    return removed


async def remove_expired_match_inputs(conn: asyncpg.Connection, retention: timedelta) -> None:
    """Remove matchProducts inputs older than `retention` that no job names any more."""
    await conn.execute("SELECT remove_expired_match_inputs($1)", retention)


async def tenants_with_file_deletions(conn: asyncpg.Connection) -> list[str]:
    """Every tenant with stored files still waiting to be removed."""
    rows = await conn.fetch("SELECT t FROM tenants_with_file_deletions() AS t")
    return [str(r["t"]) for r in rows]
