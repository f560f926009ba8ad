"""A client's mistakes come back with their real message outside dev mode, and are logged
as what they are: at INFO, not as server errors."""

from __future__ import annotations

import logging

import pytest

from bulkops.config import Settings
from bulkops.graphql.resolvers import catalog
from tests.support import GraphQLClient

PRODUCT = "query ($id: ID!) { product(id: $id) { id } }"
PRODUCTS = (
    "query ($first: Int, $f: ProductFilter) { products(first: $first, filter: $f) { totalCount } }"
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"dev": False})


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        (PRODUCT, {}, "Variable '$id' has invalid value: Expected a value of non-null type"),
        (PRODUCT, {"id": {"a": 1}}, "Variable '$id' has invalid value: ID cannot represent"),
        (PRODUCTS, {"first": "ten"}, "Int cannot represent non-integer value: 'ten'"),
        (PRODUCTS, {"f": {"createdAfter": "soon"}}, "Value cannot represent a DateTime"),
        (PRODUCTS, {"f": {"status": ["LIVE"]}}, "Value 'LIVE' does not exist in 'ProductStatus'"),
        ("{ product { id } }", {}, "Argument 'Query.product(id:)' of type 'ID!' is required"),
        ("{ nope }", {}, "Cannot query field 'nope' on type 'Query'."),
    ],
)
async def test_a_client_mistake_says_what_is_wrong(
    gql: GraphQLClient,
    caplog: pytest.LogCaptureFixture,
    query: str,
    variables: dict[str, object],
    message: str,
) -> None:
    caplog.set_level(logging.INFO)
    response = await gql.post(query, variables)
    errors = response.json()["errors"]
    assert message in errors[0]["message"]
    assert "Unexpected error" not in errors[0]["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert any(
        r.name == "bulkops.graphql" and r.levelno == logging.INFO and message in r.getMessage()
        for r in caplog.records
    )


async def test_an_unexpected_failure_is_masked_and_logged_with_its_traceback(
    gql: GraphQLClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("the catalog's secret connection string")

    monkeypatch.setattr(catalog, "products", broken)
    response = await gql.post("{ products { totalCount } }")
    error = response.json()["errors"][0]
    assert error["message"] == "Unexpected error."
    assert "secret" not in response.text
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "bulkops.graphql"
    assert record.exc_info is not None and "secret connection" in str(record.exc_info[1])
