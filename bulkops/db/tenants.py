"""Tenants and their tokens: administration, run as the owner role; and resolving a token
to its tenant, which the application role may do only through a SECURITY DEFINER function."""

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


async def product_count(conn: asyncpg.Connection, name: str) -> int:
    """How many products the tenant called `name` has (0 when there is no such tenant)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM products p JOIN tenants t ON t.id = p.tenant_id WHERE t.name = $1",
        name,
    )
    return count


async def insert_token(conn: asyncpg.Connection, tenant_id: str, token_hash: bytes) -> None:
    await conn.execute(
        "INSERT INTO api_tokens (tenant_id, token_hash) VALUES ($1, $2)", tenant_id, token_hash
    )


async def authenticate_token(conn: asyncpg.Connection, token_hash: bytes) -> str | None:
    """The id of the tenant whose token has this hash, or None."""
    tenant = await conn.fetchval("SELECT authenticate_token($1)", token_hash)
    return str(tenant) if tenant is not None else None
