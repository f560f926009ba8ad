"""Idempotency keys: the same key and input replays the first response and never makes a
second job; the same key with other input is refused. Keys expire (24 hours by default)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg

from bulkops.db import idempotency as idempotency_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError

# How long a first request may take before a retry with the same key may take it over.
LOCK_SECONDS = 120

R = TypeVar("R")


async def run_once(
    pool: asyncpg.Pool,
    tenant_id: str,
    *,
    key: str,
    operation: str,
    fingerprint: bytes,
    ttl: timedelta,
    run: Callable[[], Awaitable[R]],
    encode: Callable[[R], dict[str, Any]],
    replay: Callable[[dict[str, Any]], Awaitable[R]],
) -> R:
    """`run()` once under `key`: the first request runs and its answer is stored
    (`encode`); a repeat gets it back (`replay`), a refusal (InputError) included. An
    unexpected failure forgets the key, so that a retry runs again."""
    stored = await claim(
        pool, tenant_id, key=key, operation=operation, fingerprint=fingerprint, ttl=ttl
    )
    if stored is not None:
        return await replay(stored)
    try:
        result = await run()
    except InputError as exc:
        await store(
            pool,
            tenant_id,
            key,
            {"kind": "rejected", "code": exc.code, "message": exc.message, "field": exc.field},
        )
        raise
    except BaseException:
        await release(pool, tenant_id, key)
        raise
    await store(pool, tenant_id, key, encode(result))
    return result


def request_hash(payload: dict[str, Any]) -> bytes:
    """A fingerprint of everything that makes two requests the same request."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).digest()


async def claim(
    pool: asyncpg.Pool,
    tenant_id: str,
    *,
    key: str,
    operation: str,
    fingerprint: bytes,
    ttl: timedelta,
) -> dict[str, Any] | None:
    """None when this request holds the key now and must run; otherwise the stored
    response of the first request. Refuses other input under the same key, and a key
    whose first request is still running."""
    async with tenant_transaction(pool, tenant_id) as conn:
        claimed = await idempotency_db.claim_key(
            conn,
            key=key,
            operation=operation,
            fingerprint=fingerprint,
            lock_seconds=LOCK_SECONDS,
            ttl=ttl,
        )
        if claimed:
            return None
        stored = await idempotency_db.stored_request(conn, key)
    field = ["options", "idempotencyKey"]
    if stored.operation != operation or stored.request_hash != fingerprint:
        raise InputError(
            "This idempotency key was used with a different request.",
            code="IDEMPOTENCY_KEY_REUSED",
            field=field,
        )
    if stored.response is None:
        raise InputError(
            "A request with this idempotency key is still being processed; retry later.",
            code="IDEMPOTENCY_KEY_IN_USE",
            field=field,
        )
    return stored.response


async def store(pool: asyncpg.Pool, tenant_id: str, key: str, response: dict[str, Any]) -> None:
    """Keep the first request's response under `key`, for its repeats to replay."""
    async with tenant_transaction(pool, tenant_id) as conn:
        await idempotency_db.store_response(conn, key, response)


async def release(pool: asyncpg.Pool, tenant_id: str, key: str) -> None:
    """Forget a key whose request failed unexpectedly, so a retry may run."""
    async with tenant_transaction(pool, tenant_id) as conn:
        await idempotency_db.delete_key(conn, key)
