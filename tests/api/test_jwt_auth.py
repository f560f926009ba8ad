"""Sign-in with JWTs, against a real JWKS server with its own RSA and EC keys: what a valid
token gets, every kind of bad token (401, websocket 4403), the provider down (503 for JWT
callers, API tokens unaffected), key rotation, and scopes carried in the token."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import DELETE, JOB_SUBSCRIPTION
from tests.jwks import AUDIENCE, ISSUER, JWKSServer, SigningKey, claims, forge, sign
from tests.support import GraphQLClient, Tenant, make_products

QUERY = {"query": "{ products { totalCount } }"}
VIEWER = {"query": "{ viewer { tenant subject scopes } }"}
RSA = SigningKey("rsa")
EC = SigningKey("ec")


@pytest.fixture
async def jwks() -> AsyncIterator[JWKSServer]:
    server = JWKSServer([RSA, EC])
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def min_refresh() -> float:
    return 0.0


@pytest.fixture
def settings(settings: Settings, jwks: JWKSServer, min_refresh: float) -> Settings:
    return settings.model_copy(
        update={
            "dev": False,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_jwks_url": jwks.url,
            "jwt_jwks_min_refresh_seconds": min_refresh,
            "jwt_jwks_timeout_seconds": 2.0,
        }
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(http: httpx.AsyncClient, token: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post("/graphql", json=body, headers=bearer(token))


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("key", [RSA, EC], ids=["RS256", "ES256"])
async def test_a_valid_token_signs_in(
    http: httpx.AsyncClient, tenant: Tenant, key: SigningKey
) -> None:
    response = await post(http, sign(key, claims()), VIEWER)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {"viewer": {"tenant": "acme", "subject": "user-42", "scopes": ["read", "write"]}}
    }


def _tampered() -> str:
    header, _payload, signature = sign(RSA, claims()).split(".")
    other = sign(RSA, claims(tenant="globex")).split(".")[1]
    return f"{header}.{other}.{signature}"


BAD_TOKENS = {
    "expired": lambda: sign(RSA, claims(exp=int(time.time()) - 3600)),
    "not yet valid": lambda: sign(RSA, claims(nbf=int(time.time()) + 3600)),
    "wrong issuer": lambda: sign(RSA, claims(iss="https://other.example.test/")),
    "wrong audience": lambda: sign(RSA, claims(aud="another-api")),
    "no expiry": lambda: sign(RSA, claims(exp=None)),
    "no subject": lambda: sign(RSA, claims(sub=None)),
    "tampered payload": _tampered,
    "signed by another key": lambda: sign(SigningKey("ec"), claims(), kid=EC.kid),
    "alg none": lambda: forge({"alg": "none", "kid": RSA.kid}, claims(), None),
    "HS256 with the public key": lambda: forge(
        {"alg": "HS256", "typ": "JWT", "kid": RSA.kid}, claims(), RSA.public_pem
    ),
    "EC alg on an RSA key": lambda: sign(EC, claims(), kid=RSA.kid),
    "unknown kid": lambda: sign(SigningKey("rsa"), claims()),
    "unknown tenant": lambda: sign(RSA, claims(tenant="initech")),
    "no tenant claim": lambda: sign(RSA, claims(tenant=None)),
    "garbage": lambda: "abc.def.ghi",
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_a_bad_token_is_401(http: httpx.AsyncClient, tenant: Tenant, make: Any) -> None:
    token = make()
    assert_unauthenticated(await post(http, token, QUERY))
    response = await http.get("/export/products.csv", headers=bearer(token))
    assert_unauthenticated(response)


async def _ws_init(ws_url: str, token: str) -> Any:
    ws = await websockets.connect(ws_url, subprotocols=["graphql-transport-ws"])
    payload = {"authorization": f"Bearer {token}"}
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    return ws


async def test_websockets_take_a_good_token_and_close_4403_on_a_bad_one(
    ws_url: str, tenant: Tenant
) -> None:
    async with await _ws_init(ws_url, sign(EC, claims())) as ws:
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    for make in (BAD_TOKENS["expired"], BAD_TOKENS["alg none"], BAD_TOKENS["unknown tenant"]):
        async with await _ws_init(ws_url, make()) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4403


@pytest.mark.parametrize("down", ["503", "stopped"])
async def test_the_provider_down_is_503_for_jwts_only(
    http: httpx.AsyncClient, ws_url: str, jwks: JWKSServer, tenant: Tenant, down: str
) -> None:
    if down == "503":
        jwks.status = 503
    else:
        await jwks.stop()
    response = await post(http, sign(RSA, claims()), QUERY)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json()["errors"][0]["extensions"]["code"] == "AUTH_UNAVAILABLE"
    response = await http.get("/export/products.csv", headers=bearer(sign(RSA, claims())))
    assert response.status_code == 503
    async with await _ws_init(ws_url, sign(RSA, claims())) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1013
    # API tokens do not depend on the provider.
    response = await post(http, tenant.token, QUERY)
    assert response.status_code == 200
    assert response.json() == {"data": {"products": {"totalCount": 0}}}


async def test_keys_once_fetched_outlive_the_provider(
    http: httpx.AsyncClient, jwks: JWKSServer, tenant: Tenant
) -> None:
    assert (await post(http, sign(RSA, claims()), QUERY)).status_code == 200
    jwks.status = 503
    assert (await post(http, sign(RSA, claims()), QUERY)).status_code == 200


async def test_a_rotated_key_is_fetched(
    http: httpx.AsyncClient, jwks: JWKSServer, tenant: Tenant
) -> None:
    assert (await post(http, sign(RSA, claims()), QUERY)).status_code == 200
    new = SigningKey("rsa")
    jwks.keys.append(new)
    assert (await post(http, sign(new, claims()), QUERY)).status_code == 200


class TestRefreshIsRateLimited:
    @pytest.fixture
    def min_refresh(self) -> float:
        return 60.0

    async def test_unknown_kids_do_not_refetch_the_keys(
        self, http: httpx.AsyncClient, jwks: JWKSServer, tenant: Tenant
    ) -> None:
        assert (await post(http, sign(RSA, claims()), QUERY)).status_code == 200
        for _ in range(5):
            assert_unauthenticated(await post(http, sign(SigningKey("ec"), claims()), QUERY))
        assert jwks.requests == 1


async def test_scopes_come_from_the_token(
    http: httpx.AsyncClient,
    ws_url: str,
    owner: asyncpg.Connection,
    tenant: Tenant,
    storage: Storage,
) -> None:
    nobody = sign(RSA, claims(scope="openid profile"))
    response = await post(http, nobody, VIEWER)
    assert response.json()["data"]["viewer"]["scopes"] == []
    response = await post(http, nobody, QUERY)
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert response.json()["data"] is None
    response = await http.get("/export/products.csv", headers=bearer(nobody))
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    ids = await make_products(owner, storage, tenant, 2)
    job = await GraphQLClient(http, tenant.token)(
        DELETE, {"selection": {"ids": ids}, "options": {"mode": "BACKGROUND"}}
    )
    job_id = job["deleteProducts"]["job"]["id"]
    async with await _ws_init(ws_url, nobody) as ws:
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": JOB_SUBSCRIPTION, "variables": {"id": job_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        message = json.loads(await ws.recv())
        assert message["type"] == "error", message
        assert message["payload"][0]["extensions"]["code"] == "FORBIDDEN"

    reader = sign(RSA, claims(scope=["read"]))
    response = await post(http, reader, {"query": DELETE, "variables": {"selection": {"ids": ids}}})
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await owner.fetchval("SELECT count(*) FROM products") == 2


async def test_a_jwt_never_makes_an_operator(http: httpx.AsyncClient, tenant: Tenant) -> None:
    # The sign-in provider speaks for a tenant; seeing every tenant's queue is not its to grant.
    token = sign(RSA, claims(scope="admin operator"))
    response = await post(http, token, VIEWER)
    assert response.json()["data"]["viewer"]["scopes"] == ["admin"]
    response = await post(http, token, {"query": "{ queueStatus { runningSlices } }"})
    assert response.json()["errors"][0]["extensions"] == {"code": "FORBIDDEN", "scope": "operator"}


async def test_created_by_is_the_subject(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, storage: Storage
) -> None:
    ids = await make_products(owner, storage, tenant, 2)
    gql = GraphQLClient(http, sign(EC, claims(sub="alice@example.com", scope="write")))
    data = await gql(DELETE, {"selection": {"ids": ids}, "options": {"mode": "BACKGROUND"}})
    job_id = data["deleteProducts"]["job"]["id"]
    data = await gql("query($id: ID!) { job(id: $id) { createdBy } }", {"id": job_id})
    assert data == {"job": {"createdBy": "alice@example.com"}}
