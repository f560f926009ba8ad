"""Connection pools and tenant-scoped transactions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str, *, role: str | None, min_size: int = 2, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections act as `role` (the application role, `Settings.app_role`,
    to which row-level security applies) or, with `role=None`, as the configured owner
    (migrations and administration)."""
    server_settings = {"application_name": "bulkops"}
    if role is not None:
        server_settings["role"] = role
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=server_settings,
        init=_init_connection,
    )
    return pool


@asynccontextmanager
async def tenant_transaction(pool: asyncpg.Pool, tenant_id: str) -> AsyncIterator[Any]:
    """One transaction in which every statement sees only `tenant_id`'s rows."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('bulkops.tenant_id', $1, true)", str(tenant_id))
        yield conn


async def ping(pool: asyncpg.Pool) -> None:
    """One round trip to the database; raises when it does not answer."""
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
