"""Bearer tokens: minting them, storing only their hash, and resolving an API token or a
signed-in user's JWT to its caller."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bulkops.db.tenants import authenticate_token, tenant_named
from bulkops.models import Caller
from bulkops.services.jwt_auth import JWTVerifier, looks_like_jwt

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
    """Resolves bearer tokens to callers, remembering answers for a few seconds.

    An API token (`bko_…`) is looked up by its hash; anything else shaped as a JWT is
    checked by `jwt` when sign-in is configured, and its tenant claim looked up by name.
    A revoked token (or a tenant renamed away from a JWT's claim) keeps working for at most
    `_CACHE_SECONDS` in a process that resolved it just before. Simultaneous lookups of one
    key (a page opening many websockets) share one query."""

    def __init__(self, pool: asyncpg.Pool, jwt: JWTVerifier | None = None) -> None:
        self._pool = pool
        self._jwt = jwt
        self._cache: dict[bytes, tuple[float, Any]] = {}
        self._pending: dict[bytes, asyncio.Future[Any]] = {}

    async def caller_for(self, token: str | None) -> Caller | None:
        """The caller `token` stands for, or None. Raises
        `bulkops.services.jwt_auth.AuthUnavailable` when a JWT cannot be checked now."""
        if not token:
            return None
        if token.startswith(TOKEN_PREFIX):
            if len(token) > 200:
                return None
            owner = await self._once(b"t" + hash_token(token), self._token_owner)
            if owner is None:
                return None
            return Caller(
                tenant_id=owner.tenant_id,
                tenant_name=owner.tenant_name,
                subject=owner.token_name,
                scopes=frozenset({owner.scope}),
            )
        if self._jwt is None or not looks_like_jwt(token):
            return None
        signed_in = await self._jwt.verify(token)
        if signed_in is None:
            return None
        tenant_id = await self._once(
            b"n" + signed_in.tenant_name.encode(), lambda _: self._tenant(signed_in.tenant_name)
        )
        if tenant_id is None:
            return None
        return Caller(
            tenant_id=tenant_id,
            tenant_name=signed_in.tenant_name,
            subject=signed_in.subject,
            scopes=signed_in.scopes,
        )

    async def _token_owner(self, key: bytes) -> Any:
        async with self._pool.acquire() as conn:
            return await authenticate_token(conn, key[1:])

    async def _tenant(self, name: str) -> str | None:
        async with self._pool.acquire() as conn:
            return await tenant_named(conn, name)

    async def _once(self, key: bytes, lookup: Callable[[bytes], Awaitable[Any]]) -> Any:
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        pending = self._pending.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The caller that was looking it up went away: look it up here.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            now = time.monotonic()
            result = await lookup(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody may be waiting for it
            raise
        else:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = (now + _CACHE_SECONDS, result)
            future.set_result(result)
            return result
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
