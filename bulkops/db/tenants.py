"""Tenants and their tokens: administration, run as the owner role; and resolving a token
(or a tenant's name) to its tenant, which the application role may do only through
SECURITY DEFINER functions."""

from __future__ import annotations

import asyncpg

from bulkops.models import TokenOwner, TokenRow


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


# A token's hash prefix: the same 8 hex digits as in a default token name.
_TOKEN_COLUMNS = """n.name AS tenant_name, t.name, t.scope, t.created_at, t.revoked_at,
                    left(encode(t.token_hash, 'hex'), 8) AS hash_prefix"""


async def list_tokens(conn: asyncpg.Connection, tenant: str) -> list[TokenRow] | None:
    """The tenant's tokens, oldest first, revoked ones too; None when there is no such
    tenant."""
    if await conn.fetchval("SELECT id FROM tenants WHERE name = $1", tenant) is None:
        return None
    rows = await conn.fetch(
        f"""SELECT {_TOKEN_COLUMNS}
            FROM api_tokens t JOIN tenants n ON n.id = t.tenant_id
            WHERE n.name = $1 ORDER BY t.created_at, t.id""",
        tenant,
    )
    return [TokenRow.from_row(r) for r in rows]


async def matching_tokens(
    conn: asyncpg.Connection, key: str, token_hash: bytes, *, tenant: str | None = None
) -> list[tuple[int, TokenRow]]:
    """The tokens not yet revoked that `key` names: by name, by the start of their hash (at
    least 4 hex digits), or whole (`token_hash` is the key's hash); only the tenant's
    when `tenant` is given. Locked until the transaction ends, with their row ids."""
    rows = await conn.fetch(
        f"""SELECT t.id, {_TOKEN_COLUMNS}
            FROM api_tokens t JOIN tenants n ON n.id = t.tenant_id
            WHERE t.revoked_at IS NULL
              AND ($3::text IS NULL OR n.name = $3)
              AND (t.name = $1 OR t.token_hash = $2
                   OR (length($1) >= 4 AND $1 ~ '^[0-9a-f]+$'
                       AND encode(t.token_hash, 'hex') LIKE $1 || '%'))
            ORDER BY t.created_at, t.id
            FOR UPDATE OF t""",
        key,
        token_hash,
        tenant,
    )
    return [(r["id"], TokenRow.from_row(r)) for r in rows]


async def revoke_token(conn: asyncpg.Connection, token_id: int) -> None:
    await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = $1", token_id)
