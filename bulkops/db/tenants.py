"""Tenants and their tokens: administration, run as the owner role; and resolving a token
(or a tenant's name) to its tenant, which the application role may do only through
SECURITY DEFINER functions."""

from __future__ import annotations

import asyncpg

from bulkops.models import TokenOwner


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


async def insert_token(
    conn: asyncpg.Connection,
    tenant_id: str,
    token_hash: bytes,
    *,
    scope: str = "admin",
    name: str | None = None,
) -> str:
    """Store a token's hash with its scope; returns its name (by default `token` and the
    start of its hash, which says nothing of the token itself)."""
    name = name or "token " + token_hash.hex()[:8]
    await conn.execute(
        "INSERT INTO api_tokens (tenant_id, token_hash, scope, name) VALUES ($1, $2, $3, $4)",
        tenant_id,
        token_hash,
        scope,
        name,
    )
    return name


async def authenticate_token(conn: asyncpg.Connection, token_hash: bytes) -> TokenOwner | None:
    """Whose token has this hash (not revoked), or None."""
    row = await conn.fetchrow("SELECT * FROM authenticate_caller($1)", token_hash)
    return TokenOwner.from_row(row) if row is not None else None


async def tenant_named(conn: asyncpg.Connection, name: str) -> str | None:
    """The id of the tenant called `name`, or None."""
    tenant = await conn.fetchval("SELECT tenant_named($1)", name)
    return str(tenant) if tenant is not None else None
