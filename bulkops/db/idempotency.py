"""Idempotency keys: claiming one, and the response stored under it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg


@dataclass(frozen=True)
class StoredRequest:
    """What a key holds: the request that claimed it, and its response once it has one."""

    operation: str
    request_hash: bytes
    response: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Any) -> StoredRequest:
        return cls(
            operation=row["operation"],
            request_hash=bytes(row["request_hash"]),
            response=row["response"],
        )


async def claim_key(
    conn: asyncpg.Connection,
    *,
    key: str,
    operation: str,
    fingerprint: bytes,
    lock_seconds: float,
    ttl: timedelta,
) -> bool:
    """Take `key` for this request, locked for `lock_seconds` and kept for `ttl`: True
    when it was free, had expired, or holds the same request whose lock lapsed without a
    response."""
    claimed = await conn.fetchval(
        """INSERT INTO idempotency_keys
             (key, operation, request_hash, locked_until, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4), now() + $5)
           ON CONFLICT (tenant_id, key) DO UPDATE SET
             operation = EXCLUDED.operation,
             request_hash = EXCLUDED.request_hash,
             response = NULL,
             locked_until = EXCLUDED.locked_until,
             expires_at = EXCLUDED.expires_at,
             created_at = now()
           WHERE idempotency_keys.expires_at < now()
              OR (idempotency_keys.response IS NULL
                  AND idempotency_keys.locked_until < now()
                  AND idempotency_keys.request_hash = EXCLUDED.request_hash)
           RETURNING true""",
        key,
        operation,
        fingerprint,
        lock_seconds,
        ttl,
    )
    return bool(claimed)


async def stored_request(conn: asyncpg.Connection, key: str) -> StoredRequest:
    """The request, and any response, that `key` of the current tenant holds."""
    row = await conn.fetchrow(
        """SELECT operation, request_hash, response FROM idempotency_keys
           WHERE key = $1 AND tenant_id = current_tenant_id()""",
        key,
    )
    return StoredRequest.from_row(row)


async def store_response(conn: asyncpg.Connection, key: str, response: dict[str, Any]) -> None:
    """Keep the response of the request that holds `key`, for its repeats."""
    await conn.execute(
        """UPDATE idempotency_keys SET response = $2
           WHERE key = $1 AND tenant_id = current_tenant_id()""",
        key,
        response,
    )


async def delete_key(conn: asyncpg.Connection, key: str) -> None:
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE key = $1 AND tenant_id = current_tenant_id()",
        key,
    )
