"""Cross-origin calls as a browser makes them: the preflight, the actual request, and the
websocket handshake, for an allowed origin and a refused one, in production and dev mode."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from bulkops.config import Settings
from tests.support import Tenant

APP = "https://app.example.com"
OTHER = "https://evil.example.net"
QUERY = {"query": "{ products { totalCount } }"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "dev": False,
            "allowed_origins": [APP],
            "rate_limit_burst": 2,
            "rate_limit_per_second": 2 / 60,
        }
    )


def preflight(origin: str, headers: str = "authorization, content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers,
    }


async def test_a_preflight_from_an_allowed_origin_is_answered(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/graphql", headers=preflight(APP, "authorization, content-type, apollo-require-preflight")
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "apollo-require-preflight"):
        assert header in allowed
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_a_preflight_from_another_origin_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.options("/graphql", headers=preflight(OTHER))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_a_preflight_from_localhost_is_refused_outside_dev(http: httpx.AsyncClient) -> None:
    response = await http.options("/graphql", headers=preflight("http://localhost:3000"))
    assert "access-control-allow-origin" not in response.headers


async def test_an_allowed_origin_reads_the_answer(http: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await http.post(
        "/graphql",
        json=QUERY,
        headers={"Origin": APP, "Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"products": {"totalCount": 0}}
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Origin"


async def test_another_origin_gets_no_cors_headers(http: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await http.post(
        "/graphql",
        json=QUERY,
        headers={"Origin": OTHER, "Authorization": f"Bearer {tenant.token}"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_a_download_carries_cors_headers(http: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await http.get(
        "/export/products.csv",
        headers={"Origin": APP, "Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert "content-disposition" in response.headers["access-control-expose-headers"].lower()


async def test_refusals_are_readable_by_an_allowed_page(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await http.post("/graphql", json=QUERY, headers={"Origin": APP})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    headers = {"Origin": APP, "Authorization": f"Bearer {tenant.token}"}
    for _ in range(2):
        assert (await http.post("/graphql", json=QUERY, headers=headers)).status_code == 200
    response = await http.post("/graphql", json=QUERY, headers=headers)
    assert response.status_code == 429
    assert response.headers["access-control-allow-origin"] == APP
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()


async def _ws_ack(ws_url: str, origin: str, tenant: Tenant) -> str:
    async with websockets.connect(
        ws_url, subprotocols=["graphql-transport-ws"], origin=origin
    ) as ws:
        payload = {"authorization": f"Bearer {tenant.token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        return str(json.loads(await ws.recv())["type"])


async def test_a_websocket_from_an_allowed_origin_connects(ws_url: str, tenant: Tenant) -> None:
    assert await _ws_ack(ws_url, APP, tenant) == "connection_ack"


async def test_a_websocket_from_another_origin_is_refused(ws_url: str, tenant: Tenant) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await _ws_ack(ws_url, OTHER, tenant)
    assert refused.value.response.status_code == 403


class TestDevMode:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"dev": True})

    @pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:5173"])
    async def test_a_local_dev_server_may_call(
        self, http: httpx.AsyncClient, ws_url: str, tenant: Tenant, origin: str
    ) -> None:
        response = await http.options("/graphql", headers=preflight(origin))
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert await _ws_ack(ws_url, origin, tenant) == "connection_ack"

    async def test_other_origins_stay_refused(
        self, http: httpx.AsyncClient, ws_url: str, tenant: Tenant
    ) -> None:
        for origin in ("http://localhost.evil.net:3000", "https://localhost:3000", OTHER):
            response = await http.options("/graphql", headers=preflight(origin))
            assert "access-control-allow-origin" not in response.headers, origin
        with pytest.raises(InvalidStatus):
            await _ws_ack(ws_url, "http://localhost.evil.net:3000", tenant)
