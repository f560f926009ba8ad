"""Bearer JWTs of an OpenID Connect provider: checked against the keys it publishes (its
JWKS), and turned into a subject, a tenant name and scopes.

The keys are fetched with an async HTTP client, so a slow provider never blocks the event
loop, and kept for `jwt_jwks_cache_seconds`. A token whose `kid` is not among them (the
provider rotated its keys) fetches them again at once, but no more than once per
`jwt_jwks_min_refresh_seconds`, so that tokens with made-up key ids cannot make the
service hammer the provider. When the keys cannot be fetched and none are kept, a JWT
cannot be checked: that is `AuthUnavailable` (503), not the caller's fault."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from bulkops.config import Settings
from bulkops.domain import Scope
from bulkops.errors import BulkopsError

log = logging.getLogger(__name__)

# Signatures made with the provider's private key only. Never `none`, and never an HMAC
# algorithm: with those, anyone holding the public key could sign.
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_TOKEN_CHARS = 16_384
MAX_SUBJECT_CHARS = 255
# A tenant's sign-in provider grants the tenant's scopes; `operator` is not one of them.
_SCOPE_NAMES = frozenset(s.value for s in Scope if s != Scope.OPERATOR)


class AuthUnavailable(BulkopsError):
    """Sign-in cannot be checked right now: try again shortly."""

    code = "AUTH_UNAVAILABLE"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    """What a valid JWT says about its caller."""

    subject: str
    tenant_name: str
    scopes: frozenset[Scope]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and len(token) <= MAX_TOKEN_CHARS


class JWTVerifier:
    """Checks bearer JWTs against `settings.jwt_issuer`'s keys (see the module)."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        assert settings.jwt_issuer and settings.jwt_audience and settings.jwt_jwks_url
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.jwks_url = settings.jwt_jwks_url
        self.tenant_claim = settings.jwt_tenant_claim
        self.scope_claim = settings.jwt_scope_claim
        self.leeway = settings.jwt_leeway_seconds
        self.cache_seconds = settings.jwt_jwks_cache_seconds
        self.min_refresh = settings.jwt_jwks_min_refresh_seconds
        self._client = client or httpx.AsyncClient(
            timeout=settings.jwt_jwks_timeout_seconds, follow_redirects=False
        )
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> JWTVerifier | None:
        """A verifier when sign-in is configured, else None."""
        if settings.jwt_issuer and settings.jwt_audience and settings.jwt_jwks_url:
            return cls(settings)
        return None

    async def close(self) -> None:
        await self._client.aclose()

    async def verify(self, token: str) -> SignedIn | None:
        """What the token says, or None when it is not a valid token of the provider for
        this service. Raises `AuthUnavailable` when the provider's keys cannot be had."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        algorithm = header.get("alg")
        kid = header.get("kid")
        if algorithm not in ALLOWED_ALGORITHMS or not isinstance(kid, str | None):
            log.info("JWT refused: algorithm %r is not allowed", algorithm)
            return None
        key = await self._key(kid)
        if key is None:
            log.info("JWT refused: no key %r in the provider's key set", kid)
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.info("JWT refused: %s", exc)
            return None
        return self._signed_in(claims)

    def _signed_in(self, claims: dict[str, Any]) -> SignedIn | None:
        subject = claims.get("sub")
        tenant = claims.get(self.tenant_claim)
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            log.info("JWT refused: no usable sub claim")
            return None
        if not isinstance(tenant, str) or not tenant:
            log.info("JWT refused: no %r claim naming a tenant", self.tenant_claim)
            return None
        raw = claims.get(self.scope_claim, "")
        names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        # Scopes meant for other services are not ours to refuse the token for.
        scopes = frozenset(Scope(n) for n in names if n in _SCOPE_NAMES)
        return SignedIn(subject=subject, tenant_name=tenant, scopes=scopes)

    async def _key(self, kid: str | None) -> jwt.PyJWK | None:
        now = time.monotonic()
        fresh = self._fetched_at is not None and now - self._fetched_at < self.cache_seconds
        found = self._pick(kid)
        if found is not None and fresh:
            return found
        async with self._lock:
            found = self._pick(kid)
            if self._tried_at is not None and time.monotonic() - self._tried_at < self.min_refresh:
                # Asked just now: an unknown kid stays unknown until the next refresh.
                if found is None and self._fetched_at is None:
                    raise AuthUnavailable(self._retry_after())
                return found
            await self._refresh()
            return self._pick(kid)

    def _pick(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        # A provider with a single key may leave kid out.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    def _retry_after(self) -> int:
        return max(1, round(self.min_refresh))

    async def _refresh(self) -> None:
        self._tried_at = time.monotonic()
        try:
            response = await self._client.get(self.jwks_url)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            log.warning("the JWKS at %s cannot be fetched: %s", self.jwks_url, exc)
            if self._fetched_at is None:
                raise AuthUnavailable(self._retry_after()) from None
            return  # keep the keys we have: they were good a moment ago
        self._keys = {k.key_id: k for k in key_set.keys if k.key_id is not None}
        if not self._keys and len(key_set.keys) == 1:
            self._keys = {"": key_set.keys[0]}
        self._fetched_at = time.monotonic()
