"""Property-based fuzzing of the whole schema (hypothesis-graphql): queries and mutations
built from schema.graphql, valid ones and invalid ones, sent to the real app as a client
would. Whatever a client sends, the answer is never a server error: no 5xx, no masked
internal error ("Unexpected error."), and the service still answers afterwards.

The number of examples is bounded so that the suite stays fast; a failing example is
printed by Hypothesis and reproduced by `pytest tests/api/test_fuzz.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from hypothesis_graphql import nodes
from hypothesis_graphql import strategies as gql

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.support import Tenant, make_dataset, make_products

SCHEMA = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
EXAMPLES = 150

SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "DateTime": st.one_of(
        st.datetimes().map(lambda d: nodes.String(d.isoformat())),
        st.text(max_size=30).map(nodes.String),
    ),
    "Decimal": st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: nodes.String(str(d))),
        st.text(max_size=20).map(nodes.String),
        st.integers().map(nodes.Int),
    ),
    "JSON": st.one_of(
        st.text(max_size=20).map(nodes.String),
        st.integers().map(nodes.Int),
        st.booleans().map(nodes.Boolean),
    ),
    # A file can only come as a multipart part; anything else must be refused as data.
    "Upload": st.text(max_size=10).map(nodes.String),
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Outside dev mode, as in production: an unexpected error is masked as
    # "Unexpected error.", which is what this test looks for.
    return settings.model_copy(update={"dev": False})


@pytest.fixture
async def catalog(owner: asyncpg.Connection, storage: Storage, tenant: Tenant) -> None:
    await make_products(owner, storage, tenant, 30)
    await make_dataset(owner, tenant, "Fuzz")


def check(response: httpx.Response, query: str) -> None:
    assert response.status_code < 500, (response.status_code, query, response.text[:2000])
    try:
        body = response.json()
    except ValueError:
        return
    for error in (body.get("errors") or []) if isinstance(body, dict) else []:
        assert error.get("message") != "Unexpected error.", (query, error)


async def ask(http: httpx.AsyncClient, tenant: Tenant, query: str) -> None:
    response = await http.post(
        "/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    check(response, query)


FUZZ = examples(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)


@FUZZ
@given(query=gql.queries(SCHEMA, custom_scalars=SCALARS))
async def test_queries_never_fail_the_server(
    http: httpx.AsyncClient, tenant: Tenant, catalog: None, query: str
) -> None:
    await ask(http, tenant, query)


@FUZZ
@given(query=gql.mutations(SCHEMA, custom_scalars=SCALARS))
async def test_mutations_never_fail_the_server(
    http: httpx.AsyncClient, tenant: Tenant, catalog: None, query: str
) -> None:
    await ask(http, tenant, query)


@FUZZ
@given(
    query=gql.from_schema(SCHEMA, custom_scalars=SCALARS, mode=gql.Mode.NEGATIVE),
)
async def test_invalid_documents_never_fail_the_server(
    http: httpx.AsyncClient, tenant: Tenant, catalog: None, query: str
) -> None:
    await ask(http, tenant, query)


async def test_the_service_answers_after_fuzzing(
    http: httpx.AsyncClient, tenant: Tenant, catalog: None
) -> None:
    response = await http.post(
        "/graphql",
        json={"query": "{ products(first: 1) { totalCount } }"},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.json()["data"]["products"]["totalCount"] == 30
