"""Scopes as clients meet them: read, write and admin API tokens against a query, a
mutation, a subscription, a download and a job action; who the caller is (`viewer`); who
created a job (`Job.createdBy`)."""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest
import websockets

from bulkops.db.tenants import insert_token
from bulkops.services.auth import hash_token, new_token
from bulkops.storage import Storage
from tests.api.queries import CANCEL, DELETE, JOB_SUBSCRIPTION
from tests.support import GraphQLClient, Tenant, make_products

SCOPES = ["read", "write", "admin"]
VIEWER = "{ viewer { tenant subject scopes } }"
CREATE_DATASET = 'mutation { createDataset(name: "Summer") { __typename } }'
RETRY = """
mutation($id: ID!) {
  retryJob(id: $id, scope: ALL) {
    __typename ... on JobQueued { job { id createdBy parent { id } } }
  }
}"""
CREATED_BY = "query($id: ID!) { job(id: $id) { createdBy } }"


async def token_with(owner: asyncpg.Connection, tenant: Tenant, scope: str, name: str) -> str:
    token = new_token()
    await insert_token(owner, tenant.id, hash_token(token), scope=scope, name=name)
    return token


def client(http: httpx.AsyncClient, token: str) -> GraphQLClient:
    return GraphQLClient(http, token)


async def queue_delete(gql: GraphQLClient, ids: list[int]) -> str:
    data = await gql(DELETE, {"selection": {"ids": ids}, "options": {"mode": "BACKGROUND"}})
    return str(data["deleteProducts"]["job"]["id"])


def assert_forbidden(body: dict[str, object], scope: str) -> None:
    errors = body["errors"]
    assert isinstance(errors, list)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN", errors
    assert scope in errors[0]["message"]
    assert body.get("data") is None


@pytest.mark.parametrize("scope", SCOPES)
async def test_every_scope_reads(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, scope: str
) -> None:
    gql = client(http, await token_with(owner, tenant, scope, f"{scope} bot"))
    assert await gql("{ products { totalCount } }") == {"products": {"totalCount": 0}}
    assert await gql(VIEWER) == {
        "viewer": {
            "tenant": "acme",
            "subject": f"{scope} bot",
            "scopes": [scope],
        }
    }
    response = await http.get(
        "/export/products.csv", headers={"Authorization": f"Bearer {gql.token}"}
    )
    assert response.status_code == 200


async def test_a_read_token_cannot_change_anything(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    gql: GraphQLClient,
    storage: Storage,
) -> None:
    reader = client(http, await token_with(owner, tenant, "read", "dashboard"))
    response = await reader.post(CREATE_DATASET)
    assert_forbidden(response.json(), "write")
    assert await owner.fetchval("SELECT count(*) FROM datasets") == 0

    ids = await make_products(owner, storage, tenant, 3)
    response = await reader.post(DELETE, {"selection": {"ids": ids}})
    assert_forbidden(response.json(), "write")
    assert await owner.fetchval("SELECT count(*) FROM products") == 3

    job_id = await queue_delete(gql, ids)
    response = await reader.post(CANCEL, {"id": job_id})
    assert_forbidden(response.json(), "write")
    assert await owner.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "QUEUED"


@pytest.mark.parametrize("scope", ["write", "admin"])
async def test_write_and_admin_change_things(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    gql: GraphQLClient,
    storage: Storage,
    scope: str,
) -> None:
    writer = client(http, await token_with(owner, tenant, scope, "importer"))
    assert (await writer(CREATE_DATASET))["createDataset"]["__typename"] == "Dataset"
    # Another caller's job of the same tenant: write may act on it.
    job_id = await queue_delete(gql, await make_products(owner, storage, tenant, 2))
    data = await writer(CANCEL, {"id": job_id})
    assert data["cancelJob"]["status"] in ("CANCELLED", "CANCELLING")


async def test_a_read_token_subscribes(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    gql: GraphQLClient,
    storage: Storage,
    ws_url: str,
) -> None:
    job_id = await queue_delete(gql, await make_products(owner, storage, tenant, 2))
    token = await token_with(owner, tenant, "read", "watcher")
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": JOB_SUBSCRIPTION, "variables": {"id": job_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        message = json.loads(await ws.recv())
        assert message["type"] == "next", message
        assert message["payload"]["data"]["job"]["id"] == job_id


async def test_created_by_names_the_token_and_the_retrier(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, storage: Storage
) -> None:
    ids = await make_products(owner, storage, tenant, 2)
    creator = client(http, await token_with(owner, tenant, "write", "nightly import"))
    job_id = await queue_delete(creator, ids)
    assert await creator(CREATED_BY, {"id": job_id}) == {"job": {"createdBy": "nightly import"}}
    await creator(CANCEL, {"id": job_id})

    retrier = client(http, await token_with(owner, tenant, "admin", "on-call"))
    child = (await retrier(RETRY, {"id": job_id}))["retryJob"]
    assert child["__typename"] == "JobQueued", child
    assert child["job"]["createdBy"] == "on-call"
    assert child["job"]["parent"] == {"id": job_id}


async def test_a_token_made_without_a_name_is_named_after_its_hash(
    gql: GraphQLClient, tenant: Tenant
) -> None:
    subject = (await gql(VIEWER))["viewer"]["subject"]
    assert subject == "token " + hash_token(tenant.token).hex()[:8]
    assert (await gql(VIEWER))["viewer"]["scopes"] == ["admin"]
