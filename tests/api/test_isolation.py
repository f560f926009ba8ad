"""Tenant isolation: through the API, and in SQL under the application role."""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest
import websockets

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import CANCEL, DELETE, JOB, JOB_SUBSCRIPTION, SET_STATUS
from tests.support import GraphQLClient, Subscription, Tenant, make_dataset, make_products


async def test_another_tenants_token_sees_and_changes_nothing_of_ours(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    ws_url: str,
) -> None:
    ours = await make_products(owner, storage, tenant, 5)
    dataset = await make_dataset(owner, tenant, "Summer")
    mine = GraphQLClient(http, tenant.token)
    theirs = GraphQLClient(http, other_tenant.token)
    queued = (
        await mine(
            DELETE,
            {"selection": {"ids": [str(i) for i in ours]}, "options": {"mode": "BACKGROUND"}},
        )
    )["deleteProducts"]
    job_id = queued["job"]["id"]

    seen = await theirs(
        """query($p: ID!, $d: ID!, $j: ID!) {
             product(id: $p) { id } dataset(id: $d) { id } job(id: $j) { id }
             products { totalCount } datasets { totalCount } jobs { totalCount } }""",
        {"p": str(ours[0]), "d": str(dataset), "j": job_id},
    )
    assert seen == {
        "product": None,
        "dataset": None,
        "job": None,
        "products": {"totalCount": 0},
        "datasets": {"totalCount": 0},
        "jobs": {"totalCount": 0},
    }
    for document, variables in [
        (DELETE, {"selection": {"ids": [str(ours[0])]}}),
        (SET_STATUS, {"selection": {"ids": [str(ours[0])]}, "status": "ARCHIVED"}),
    ]:
        result = next(iter((await theirs(document, variables)).values()))
        assert result["__typename"] == "Rejected"
        assert (result["code"], result["field"]) == ("NOT_FOUND", ["selection", "ids"])
    cancel = (await theirs(CANCEL, {"id": job_id}))["cancelJob"]
    assert (cancel["__typename"], cancel["code"]) == ("Rejected", "NOT_FOUND")

    sub = Subscription(ws_url, other_tenant.token)
    await sub.connect()
    await sub.start(JOB_SUBSCRIPTION, {"id": job_id})
    messages = await sub.messages()
    await sub.close()
    assert messages[0]["type"] in ("error", "next")
    errors = (
        messages[0]["payload"]
        if messages[0]["type"] == "error"
        else messages[0]["payload"]["errors"]
    )
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"

    status = await owner.fetchval("SELECT status FROM jobs WHERE id = $1", job_id)
    assert status == "QUEUED"
    assert await owner.fetchval("SELECT count(*) FROM products") == 5


async def test_requests_without_a_valid_token_are_refused(
    http: httpx.AsyncClient, ws_url: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        response = await http.post(
            "/graphql", json={"query": "{ products { totalCount } }"}, headers=headers
        )
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer wrong"}})
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def app_connection(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url
    return await asyncpg.connect(settings.database_url, server_settings={"role": "bulkops_app"})


async def test_row_level_security_hides_other_tenants_rows_from_the_application_role(
    settings: Settings,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    ours = await make_products(owner, storage, tenant, 3)
    await make_products(owner, storage, other_tenant, 2)
    conn = await app_connection(settings)
    try:
        assert await conn.fetchval("SELECT current_user") == "bulkops_app"
        # Without a tenant, nothing at all is visible.
        assert await conn.fetchval("SELECT count(*) FROM products") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('bulkops.tenant_id', $1, true)", other_tenant.id)
            # Even a query that forgets the tenant filter sees only its own rows.
            assert await conn.fetchval("SELECT count(*) FROM products") == 2
            assert await conn.fetchval("SELECT count(*) FROM product_images") == 2
            updated = await conn.execute(
                "UPDATE products SET name = 'stolen' WHERE id = ANY($1::bigint[])", ours
            )
            assert updated == "UPDATE 0"
            deleted = await conn.execute("DELETE FROM products WHERE id = ANY($1::bigint[])", ours)
            assert deleted == "DELETE 0"
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO products (tenant_id, sku, name) VALUES ($1, 'x', 'x')", tenant.id
                )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM api_tokens")
        bypass = await conn.fetchval(
            "SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = 'bulkops_app'"
        )
        assert bypass is False
    finally:
        await conn.close()
    names = await owner.fetch("SELECT name FROM products WHERE tenant_id = $1", tenant.id)
    assert [r["name"] for r in names] == ["Product 1", "Product 2", "Product 3"]


async def test_a_job_subscription_with_a_malformed_id_is_an_error(
    gql: GraphQLClient, tenant: Tenant, ws_url: str
) -> None:
    assert (await gql(JOB, {"id": "not-a-uuid"}))["job"] is None
    sub = Subscription(ws_url, tenant.token)
    await sub.connect()
    await sub.start(JOB_SUBSCRIPTION, {"id": "not-a-uuid"})
    messages = await sub.messages()
    await sub.close()
    payload = messages[0]["payload"]
    errors = payload if messages[0]["type"] == "error" else payload["errors"]
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
