"""The request path of a bulk mutation: long id lists (read as given, bad ones named), the
job and its ids written together, and its first state announced when it is queued."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from bulkops.constants import tenant_jobs_channel
from bulkops.storage import Storage
from tests.api.queries import SET_STATUS
from tests.support import GraphQLClient, Tenant, make_products

# The ids as a variable of their own, as big clients send them.
STATUS_BY_IDS = """
mutation($ids: [ID!]!, $status: ProductStatus!, $options: BulkOptions) {
  setProductStatus(selection: {ids: $ids}, status: $status, options: $options) {
    __typename
    ... on BulkSummary { matched succeeded skipped failed }
    ... on JobQueued { job { id status total } }
    ... on Rejected { code message field }
  }
}"""

COUNT = 100


@pytest.fixture
async def catalog(owner: asyncpg.Connection, storage: Storage, tenant: Tenant) -> list[int]:
    return await make_products(owner, storage, tenant, COUNT)


async def statuses(owner: asyncpg.Connection) -> dict[str, int]:
    rows = await owner.fetch("SELECT status, count(*) AS n FROM products GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


@pytest.mark.parametrize("shape", ["ids variable", "selection variable"])
@pytest.mark.parametrize("kind", ["strings", "numbers"])
async def test_a_long_id_list_is_read_as_given(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: list[int], shape: str, kind: str
) -> None:
    # Repeats count once; numbers are ids too (graphql-core reads them as strings).
    given: list[Any] = [*catalog, *catalog[:10]]
    ids = [str(i) for i in given] if kind == "strings" else given
    if shape == "ids variable":
        data = await gql(STATUS_BY_IDS, {"ids": ids, "status": "ARCHIVED"})
    else:
        data = await gql(SET_STATUS, {"selection": {"ids": ids}, "status": "ARCHIVED"})
    result = data["setProductStatus"]
    assert (result["matched"], result["succeeded"], result["failed"]) == (COUNT, COUNT, 0)
    assert await statuses(owner) == {"ARCHIVED": COUNT}


@pytest.mark.parametrize("shape", ["ids variable", "selection variable"])
@pytest.mark.parametrize("bad", ["x7", "-3", "0", str(2**63), ""])
async def test_a_bad_id_in_a_long_list_is_named_and_nothing_changes(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: list[int], shape: str, bad: str
) -> None:
    ids = [str(i) for i in catalog]
    ids[80] = bad
    before = await statuses(owner)
    if shape == "ids variable":
        data = await gql(STATUS_BY_IDS, {"ids": ids, "status": "ARCHIVED"})
    else:
        data = await gql(SET_STATUS, {"selection": {"ids": ids}, "status": "ARCHIVED"})
    result = data["setProductStatus"]
    assert result["__typename"] == "Rejected"
    assert result["code"] == "INVALID_ID"
    assert result["field"] == ["selection", "ids", "80"]
    assert await statuses(owner) == before


async def test_a_null_in_a_long_id_list_is_refused_before_anything_runs(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: list[int]
) -> None:
    ids: list[Any] = [str(i) for i in catalog]
    ids[50] = None
    before = await statuses(owner)
    response = await gql.post(STATUS_BY_IDS, {"ids": ids, "status": "ARCHIVED"})
    body = response.json()
    assert body.get("data") is None
    assert body["errors"]
    assert await statuses(owner) == before


async def test_an_unknown_id_in_a_long_list_queues_nothing(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: list[int]
) -> None:
    ids = [str(i) for i in catalog]
    ids[10] = "999999999"
    data = await gql(
        STATUS_BY_IDS, {"ids": ids, "status": "ARCHIVED", "options": {"mode": "BACKGROUND"}}
    )
    result = data["setProductStatus"]
    assert (result["__typename"], result["code"]) == ("Rejected", "NOT_FOUND")
    assert result["field"] == ["selection", "ids"]
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0
    assert await owner.fetchval("SELECT count(*) FROM job_item_chunks") == 0


async def test_a_queued_job_holds_its_ids_and_is_announced(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    catalog: list[int],
    redis_url: str,
    tenant: Tenant,
) -> None:
    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(tenant_jobs_channel(tenant.id))
    try:
        ids = [str(i) for i in reversed(catalog)]
        data = await gql(
            STATUS_BY_IDS, {"ids": ids, "status": "ARCHIVED", "options": {"mode": "BACKGROUND"}}
        )
        job = data["setProductStatus"]["job"]
        assert (job["status"], job["total"]) == ("QUEUED", COUNT)
        items = await owner.fetch(
            "SELECT unnest(ids) AS item_id, tenant_id::text AS tenant FROM job_item_chunks "
            "WHERE job_id = $1 ORDER BY item_id",
            job["id"],
        )
        assert [r["item_id"] for r in items] == sorted(catalog)
        assert {r["tenant"] for r in items} == {tenant.id}
        announced = await _next_message(pubsub)
        assert (announced["id"], announced["status"]) == (job["id"], "QUEUED")
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def _next_message(pubsub: Any) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                data: dict[str, Any] = json.loads(message["data"])
                return data

    return await asyncio.wait_for(first(), 10)


TOO_MANY_ALIASES = "query { " + " ".join(f"a{n}: __typename" for n in range(31)) + " }"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("mutation { nope }", "Cannot query field 'nope' on type 'Mutation'."),
        (TOO_MANY_ALIASES, "31 aliases found. Allowed: 30"),
    ],
    ids=["unknown field", "too many aliases"],
)
async def test_a_refused_document_is_refused_every_time(
    gql: GraphQLClient, document: str, message: str
) -> None:
    for _ in range(3):
        body = (await gql.post(document)).json()
        assert body.get("data") is None
        assert [e["message"] for e in body["errors"]] == [message]


async def test_a_document_sent_again_runs_with_its_new_variables(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: list[int]
) -> None:
    ids = [str(i) for i in catalog[:10]]
    for status in ("ARCHIVED", "ACTIVE", "DRAFT"):
        result = (await gql(STATUS_BY_IDS, {"ids": ids, "status": status}))["setProductStatus"]
        assert result["succeeded"] == 10
        rows = await owner.fetch(
            "SELECT DISTINCT status FROM products WHERE id = ANY($1::bigint[])", catalog[:10]
        )
        assert [r["status"] for r in rows] == [status]
