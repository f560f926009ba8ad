"""Tenants and their tokens: administration, run as the owner role."""

from __future__ import annotations

import asyncpg


async def ensure_tenant(conn: asyncpg.Connection, name: str) -> str:
    """The id of the tenant called `name`, created if needed."""
    tenant_id = await conn.fetchval(
        """INSERT INTO tenants (name) VALUES ($1)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
           RETURNING id""",
        name,
    )
    return str(tenant_id)


async def insert_token(conn: asyncpg.Connection, tenant_id: str, token_hash: bytes) -> None:
    await conn.execute(
        "INSERT INTO api_tokens (tenant_id, token_hash) VALUES ($1, $2)", tenant_id, token_hash
    )
