"""Bearer tokens: minting them, storing only their hash, and resolving them to a tenant."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time

import asyncpg

from bulkops.db.tenants import authenticate_token

TOKEN_PREFIX = "bko_"
_CACHE_SECONDS = 30.0
_CACHE_SIZE = 10_000


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    """Resolves tokens to tenants, remembering answers for a few seconds.

    A revoked token keeps working for at most `_CACHE_SECONDS` in a process that resolved
    it just before. Simultaneous lookups of one token (a page opening many websockets)
    share one query."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[bytes, tuple[float, str | None]] = {}
        self._pending: dict[bytes, asyncio.Future[str | None]] = {}

    async def tenant_for(self, token: str | None) -> str | None:
        if not token or len(token) > 200:
            return None
        digest = hash_token(token)
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        pending = self._pending.get(digest)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The caller that was looking it up went away: look it up here.
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            result = await self._lookup(digest)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody may be waiting for it
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self._pending.get(digest) is future:
                del self._pending[digest]

    async def _lookup(self, digest: bytes) -> str | None:
        now = time.monotonic()
        async with self._pool.acquire() as conn:
            result = await authenticate_token(conn, digest)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[digest] = (now + _CACHE_SECONDS, result)
        return result
