"""An OpenID provider's signing side for the tests: RSA and EC keys generated here, JWTs
signed with them, and a real HTTP server publishing the public keys as a JWKS, which can be
switched to answer 503 or stopped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import socket
import time
import uuid
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.serving import QuickServer

ISSUER = "https://id.example.test/"
AUDIENCE = "bulkops-api"


class SigningKey:
    def __init__(self, kind: str) -> None:
        self.kid = f"{kind}-{uuid.uuid4().hex[:8]}"
        self.kind = kind
        if kind == "rsa":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.algorithm = "RS256"
            jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.algorithm = "ES256"
            jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    @property
    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "tenant": "acme",
        "scope": "openid read write",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: SigningKey, payload: dict[str, Any], *, kid: str | None = None) -> str:
    return jwt.encode(
        payload, key.private, algorithm=key.algorithm, headers={"kid": kid or key.kid}
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT would refuse to make: `alg: none`, or HMAC keyed with a public key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


class JWKSServer:
    """Serves `/.well-known/jwks.json` on a loopback port; `status` other than 200 makes it
    answer that; `requests` counts the fetches."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.status = 200
        self.requests = 0
        self._server: QuickServer | None = None
        self._task: asyncio.Task[None] | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def _jwks(self, request: Request) -> Response:
        self.requests += 1
        if self.status != 200:
            return JSONResponse({"error": "unavailable"}, status_code=self.status)
        return JSONResponse({"keys": [k.jwk for k in self.keys]})

    async def start(self) -> None:
        app = Starlette(routes=[Route("/.well-known/jwks.json", self._jwks)])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = QuickServer(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.stop()
        done, _ = await asyncio.wait({self._task}, timeout=5)
        if not done:
            self._server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None
