"""Bearer tokens: minting them, storing only their hash, and resolving them to a tenant."""

from __future__ import annotations

import hashlib
import secrets
import time

import asyncpg

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
    """Resolves tokens to tenants, remembering answers for a few seconds."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[bytes, tuple[float, str | None]] = {}

    async def tenant_for(self, token: str | None) -> str | None:
        if not token or len(token) > 200:
            return None
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._pool.acquire() as conn:
            tenant = await conn.fetchval("SELECT authenticate_token($1)", digest)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        result = str(tenant) if tenant is not None else None
        self._cache[digest] = (now + _CACHE_SECONDS, result)
        return result
