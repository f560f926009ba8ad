"""Bad input gets a typed error naming the field, and nothing changes."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import ADD_TO_DATASET, CANCEL, DELETE, REMOVE_FROM_DATASET, SET_STATUS
from tests.support import GraphQLClient, Tenant, make_dataset, make_products, run_worker


async def snapshot(owner: asyncpg.Connection) -> tuple[Any, ...]:
    return (
        await owner.fetchval("SELECT count(*) FROM products"),
        await owner.fetchval("SELECT count(*) FROM dataset_products"),
        await owner.fetchval("SELECT count(*) FROM jobs"),
        await owner.fetchval("SELECT string_agg(status, ',' ORDER BY id) FROM products"),
    )


@pytest.fixture
async def catalog(owner: asyncpg.Connection, storage: Storage, tenant: Tenant) -> list[int]:
    return await make_products(owner, storage, tenant, 5)


CASES: list[tuple[str, str, dict[str, Any], str, list[str]]] = [
    ("empty ids", DELETE, {"selection": {"ids": []}}, "EMPTY_SELECTION", ["selection", "ids"]),
    (
        "both ids and filter",
        DELETE,
        {"selection": {"ids": ["1"], "filter": {}}},
        "INVALID_SELECTION",
        ["selection"],
    ),
    ("neither ids nor filter", DELETE, {"selection": {}}, "INVALID_SELECTION", ["selection"]),
    (
        "unknown id",
        DELETE,
        {"selection": {"ids": ["1", "999999"]}},
        "NOT_FOUND",
        ["selection", "ids"],
    ),
    (
        "malformed id",
        SET_STATUS,
        {"selection": {"ids": ["1", "abc"]}, "status": "ACTIVE"},
        "INVALID_ID",
        ["selection", "ids", "1"],
    ),
    (
        "negative id",
        DELETE,
        {"selection": {"ids": ["-4"]}},
        "INVALID_ID",
        ["selection", "ids", "0"],
    ),
    (
        "missing dataset",
        ADD_TO_DATASET,
        {"datasetId": "424242", "selection": {"ids": ["1"]}},
        "NOT_FOUND",
        ["datasetId"],
    ),
    (
        "malformed dataset id",
        REMOVE_FROM_DATASET,
        {"datasetId": "x1", "selection": {"ids": ["1"]}},
        "INVALID_ID",
        ["datasetId"],
    ),
    (
        "filter on a missing dataset",
        DELETE,
        {"selection": {"filter": {"datasetId": "777"}}},
        "NOT_FOUND",
        ["selection", "filter", "datasetId"],
    ),
    (
        "idempotency key too long",
        DELETE,
        {"selection": {"ids": ["1"]}, "options": {"idempotencyKey": "k" * 300}},
        "INVALID_IDEMPOTENCY_KEY",
        ["options", "idempotencyKey"],
    ),
]


@pytest.mark.parametrize(
    ("document", "variables", "code", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
@pytest.mark.usefixtures("catalog")
async def test_bad_selection_is_rejected_with_the_field_and_changes_nothing(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    document: str,
    variables: dict[str, Any],
    code: str,
    field: list[str],
) -> None:
    before = await snapshot(owner)
    data = await gql(document, variables)
    result = next(iter(data.values()))
    assert result["__typename"] == "Rejected", result
    assert (result["code"], result["field"]) == (code, field)
    assert result["message"]
    assert await snapshot(owner) == before


async def test_two_million_ids_are_refused_before_anything_runs(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: list[int]
) -> None:
    before = await snapshot(owner)
    ids = [str(i) for i in range(1, 2_000_001)]
    result = (await gql(DELETE, {"selection": {"ids": ids}}))["deleteProducts"]
    assert (result["code"], result["field"]) == ("TOO_MANY_IDS", ["selection", "ids"])
    assert await snapshot(owner) == before


async def test_inline_over_the_hard_limit_is_refused_and_says_to_use_background(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    await make_products(owner, storage, tenant, 10_001, with_images=False)
    before = await snapshot(owner)
    result = (
        await gql(
            SET_STATUS,
            {"selection": {"filter": {}}, "status": "ACTIVE", "options": {"mode": "INLINE"}},
        )
    )["setProductStatus"]
    assert (result["code"], result["field"]) == ("INLINE_LIMIT_EXCEEDED", ["options", "mode"])
    assert "BACKGROUND" in result["message"]
    assert await snapshot(owner) == before


async def test_unknown_enum_values_are_graphql_validation_errors(gql: GraphQLClient) -> None:
    response = await gql.post(SET_STATUS, {"selection": {"ids": ["1"]}, "status": "GONE"})
    body = response.json()
    assert body["data"] is None
    assert "GONE" in body["errors"][0]["message"]


async def test_a_dataset_deleted_while_its_job_waits_fails_the_job_with_a_reason(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 5)
    dataset = await make_dataset(owner, tenant, "Doomed")
    result = (
        await gql(
            ADD_TO_DATASET,
            {
                "datasetId": str(dataset),
                "selection": {"ids": [str(i) for i in ids]},
                "options": {"mode": "BACKGROUND"},
            },
        )
    )["addProductsToDataset"]
    await owner.execute("DELETE FROM datasets WHERE id = $1", dataset)
    await run_worker(settings)
    job = (
        await gql(
            "query($id: ID!) { job(id: $id) { status errors { edges { node { code } } } } }",
            {"id": result["job"]["id"]},
        )
    )["job"]
    assert job["status"] == "FAILED"
    assert [e["node"]["code"] for e in job["errors"]["edges"]] == ["DATASET_NOT_FOUND"]
    assert await owner.fetchval("SELECT count(*) FROM dataset_products") == 0


async def test_cancel_with_a_malformed_or_unknown_id_is_rejected(gql: GraphQLClient) -> None:
    bad = (await gql(CANCEL, {"id": "zzz"}))["cancelJob"]
    assert (bad["code"], bad["field"]) == ("INVALID_ID", ["id"])
    unknown = (await gql(CANCEL, {"id": "00000000-0000-0000-0000-000000000000"}))["cancelJob"]
    assert (unknown["code"], unknown["field"]) == ("NOT_FOUND", ["id"])


async def test_create_dataset_rejects_blank_and_duplicate_names(gql: GraphQLClient) -> None:
    doc = """mutation($n: String!) { createDataset(name: $n) {
               __typename ... on Dataset { name productCount }
               ... on Rejected { code field } } }"""
    assert (await gql(doc, {"n": "Summer"}))["createDataset"] == {
        "__typename": "Dataset",
        "name": "Summer",
        "productCount": 0,
    }
    assert (await gql(doc, {"n": "Summer"}))["createDataset"] == {
        "__typename": "Rejected",
        "code": "DUPLICATE_NAME",
        "field": ["name"],
    }
    assert (await gql(doc, {"n": "   "}))["createDataset"] == {
        "__typename": "Rejected",
        "code": "INVALID_NAME",
        "field": ["name"],
    }
