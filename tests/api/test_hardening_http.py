"""The HTTP request to /graphql: a body, query parameters or an upload that cannot be read,
strings that cannot be stored and queries past their limits get a typed 4xx (or a typed
GraphQL error), never a server error, and the service answers the next request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import DELETE
from tests.support import GraphQLClient, Tenant, make_dataset, make_products

SEARCH = "query($filter: ProductFilter) { products(filter: $filter) { totalCount } }"
IMPORT = """mutation($upload: Upload!) { importProducts(upload: $upload) {
  __typename ... on Rejected { code field } } }"""
CSV = b"sku,name\nNEW-1,New\n"


def auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}"}


async def post_raw(http: httpx.AsyncClient, tenant: Tenant, content: Any) -> httpx.Response:
    return await http.post(
        "/graphql", content=content, headers={"Content-Type": "application/json", **auth(tenant)}
    )


def as_json(payload: Any) -> bytes:
    # ensure_ascii writes a lone surrogate as the escape a client would send.
    return json.dumps(payload, ensure_ascii=True).encode()


def refusal(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["message"]
    assert error["message"] != "Unexpected error."
    extensions: dict[str, Any] = error["extensions"]
    return extensions


async def still_serves(http: httpx.AsyncClient, gql: GraphQLClient) -> None:
    assert (await http.get("/healthz")).text == "ok"
    assert (await gql("{ products { totalCount } }"))["products"]["totalCount"] >= 0


async def snapshot(owner: asyncpg.Connection) -> tuple[Any, ...]:
    return (
        await owner.fetchval("SELECT count(*) FROM products"),
        await owner.fetchval("SELECT count(*) FROM datasets"),
        await owner.fetchval("SELECT count(*) FROM jobs"),
        await owner.fetchval("SELECT string_agg(name || status, ',' ORDER BY id) FROM products"),
    )


@pytest.fixture
async def catalog(owner: asyncpg.Connection, storage: Storage, tenant: Tenant) -> list[int]:
    return await make_products(owner, storage, tenant, 3)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"query": "{ __typename \xff }"}', None),
        (b"null", None),
        (b"42", None),
        (b"true", None),
        (b'"{ __typename }"', None),
        (b'[{"query": "{ __typename }"}]', None),
        (b'{"query": "{ __typename }"', None),
        (b'{"query": "{ __typename }", "variables": {"n": NaN}}', None),
        (b'{"query": "{ __typename }", "variables": {"n": 1e400}}', None),
        (b'{"query": "{ __typename }", "variables": {"n": ' + b"9" * 5000 + b"}}", None),
        (b"[" * 100_000 + b"]" * 100_000, None),
        (b"{}", ["query"]),
        (b'{"query": null}', ["query"]),
        (b'{"query": ["{ __typename }"]}', ["query"]),
        (b'{"query": "{ __typename }", "variables": []}', ["variables"]),
        (b'{"query": "{ __typename }", "variables": "{}"}', ["variables"]),
        (b'{"query": "{ __typename }", "operationName": 7}', ["operationName"]),
        (b'{"query": "{ __typename }", "extensions": "x"}', ["extensions"]),
        (b'{"query": "{ __typename }", "operationName": "\\ud800"}', ["operationName"]),
    ],
    ids=[
        "invalid utf-8",
        "null",
        "number",
        "true",
        "string",
        "list",
        "truncated",
        "NaN",
        "infinite number",
        "too many digits",
        "nested 100000 deep",
        "no query",
        "null query",
        "query a list",
        "variables a list",
        "variables a string",
        "operationName a number",
        "extensions a string",
        "operationName a lone surrogate",
    ],
)
async def test_a_body_that_is_not_one_graphql_request_is_a_400(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant, body: bytes, field: Any
) -> None:
    response = await post_raw(http, tenant, body)
    assert response.status_code == 400
    extensions = refusal(response)
    assert extensions["code"] == "BAD_REQUEST"
    assert extensions.get("field") == field
    await still_serves(http, gql)


# Past about a thousand levels the body cannot even be read as JSON ("nested 100000 deep").
@pytest.mark.parametrize("depth", [65, 500])
async def test_variables_nested_past_the_bound_are_refused_naming_the_variable(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant, depth: int
) -> None:
    # Written out: the JSON encoder itself would recurse that deep.
    ids = "[" * depth + '"1"' + "]" * depth
    body = f'{{"query": {json.dumps(DELETE)}, "variables": {{"selection": {{"ids": {ids}}}}}}}'
    response = await post_raw(http, tenant, body.encode())
    assert response.status_code == 400
    extensions = refusal(response)
    assert (extensions["code"], extensions["field"]) == (
        "BAD_USER_INPUT",
        ["variables", "selection"],
    )
    await still_serves(http, gql)


async def test_a_body_sent_chunked_past_the_limit_is_a_413(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant, settings: Settings
) -> None:
    # No Content-Length: the size is only known while reading. Just past the limit, so the
    # server has read nearly all of it when it answers (and the answer is not lost to a
    # connection reset).
    mib = 1024 * 1024
    assert settings.max_request_bytes % mib == 0

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ __typename }", "variables": {"pad": "'
        for _ in range(settings.max_request_bytes // mib):
            yield b"x" * mib
        yield b'"}}'

    response = await post_raw(http, tenant, chunks())
    assert response.status_code == 413
    assert refusal(response)["code"] == "REQUEST_TOO_LARGE"
    await still_serves(http, gql)


async def test_a_query_past_the_size_limit_is_refused_before_it_is_parsed(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant
) -> None:
    huge = "{ " + "__typename " * 450_000 + "}"
    response = await post_raw(http, tenant, as_json({"query": huge}))
    assert response.status_code == 413
    extensions = refusal(response)
    assert (extensions["code"], extensions["field"]) == ("QUERY_TOO_LARGE", ["query"])
    await still_serves(http, gql)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ __typename" + " a" * 12_000 + " }", "QUERY_TOO_LARGE"),
        ("{ __typename }" + "\n#" * 12_000, "QUERY_TOO_LARGE"),
        ("{ " + "operations { name } " * 200 + "}", "QUERY_TOO_COMPLEX"),
        (
            "{ ...F0 } "
            + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30))
            + " fragment F30 on Query { __typename }",
            "QUERY_TOO_COMPLEX",
        ),
        ("{ products { } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ __typename ...F } fragment F on Query { }", "GRAPHQL_VALIDATION_FAILED"),
    ],
    ids=[
        "too many tokens",
        "too many comments",
        "too many fields",
        "fragments doubling",
        "empty selection",
        "empty fragment",
    ],
)
async def test_a_query_past_its_cost_limits_or_selecting_nothing_is_a_typed_error(
    http: httpx.AsyncClient, gql: GraphQLClient, query: str, code: str
) -> None:
    for _ in range(2):
        response = await gql.post(query)
        assert refusal(response)["code"] == code
    await still_serves(http, gql)


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["NUL", "lone surrogate"])
@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        (SEARCH, {"filter": {"search": "a{}"}}, ["filter", "search"]),
        (SEARCH, {"filter": {"brand": ["Acme", "{}"]}}, ["filter", "brand", "1"]),
        (SEARCH, {"filter": {"category": ["{}"]}}, ["filter", "category", "0"]),
        (SEARCH, {"filter": {"skuPrefix": "SKU{}"}}, ["filter", "skuPrefix"]),
        (
            "query($op: String) { jobs(operation: $op) { totalCount } }",
            {"op": "delete{}"},
            ["op"],
        ),
        (
            "mutation($n: String!) { createDataset(name: $n) { __typename } }",
            {"n": "Summer{}"},
            ["n"],
        ),
        (
            DELETE,
            {"selection": {"ids": ["1"]}, "options": {"idempotencyKey": "k{}"}},
            ["options", "idempotencyKey"],
        ),
        (
            """mutation($s: ProductSelection!, $p: ProductPatch!) {
                 updateProducts(selection: $s, patch: $p) { __typename } }""",
            {"s": {"ids": ["1"]}, "p": {"name": "New{}"}},
            ["p", "name"],
        ),
        (
            """mutation($s: ProductSelection!, $p: ProductPatch!) {
                 updateProducts(selection: $s, patch: $p) { __typename } }""",
            {"s": {"ids": ["1"]}, "p": {"attributes": {"colour": {"shade": "red{}"}}}},
            ["p", "attributes", "colour", "shade"],
        ),
        (
            """mutation($s: ProductSelection!, $p: ProductPatch!) {
                 updateProducts(selection: $s, patch: $p) { __typename } }""",
            {"s": {"ids": ["1"]}, "p": {"attributes": {"key{}": 1}}},
            ["p", "attributes"],
        ),
        (
            "mutation($rows: [MatchRowInput!]) { matchProducts(rows: $rows) { __typename } }",
            {"rows": [{"sku": "SKU-1"}, {"name": "x{}"}]},
            ["rows", "1", "name"],
        ),
        (
            "mutation($f: ProductFilter) { exportProducts(filter: $f) { __typename } }",
            {"f": {"search": "{}"}},
            ["f", "search"],
        ),
    ],
    ids=[
        "search",
        "brand",
        "category",
        "skuPrefix",
        "jobs operation",
        "dataset name",
        "idempotency key",
        "patch name",
        "attribute value",
        "attribute key",
        "match row",
        "export filter",
    ],
)
@pytest.mark.usefixtures("catalog")
async def test_a_string_variable_that_cannot_be_stored_is_refused_naming_it(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    tenant: Tenant,
    owner: asyncpg.Connection,
    bad: str,
    query: str,
    variables: dict[str, Any],
    field: list[str],
) -> None:
    before = await snapshot(owner)
    given = json.loads(json.dumps(variables).replace("{}", json.dumps(bad)[1:-1]))
    response = await post_raw(http, tenant, as_json({"query": query, "variables": given}))
    assert response.status_code == 400
    extensions = refusal(response)
    assert (extensions["code"], extensions["field"]) == ("BAD_USER_INPUT", ["variables", *field])
    assert await snapshot(owner) == before
    await still_serves(http, gql)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (r'{ products(filter: {search: "a\u0000"}) { totalCount } }', ["filter", "search"]),
        (
            r'{ products(filter: {brand: ["x", "\u0000"]}) { totalCount } }',
            ["filter", "brand", "1"],
        ),
        (r'{ jobs(operation: "\u0000") { totalCount } }', ["operation"]),
        ('{ jobs(operation: """raw \x00 NUL""") { totalCount } }', ["operation"]),
        (r'mutation { createDataset(name: "S\u0000") { __typename } }', ["name"]),
        (
            r'query($s: String = "\u0000") { products(filter: {search: $s}) { totalCount } }',
            ["variables", "s"],
        ),
    ],
    ids=["search", "brand", "jobs operation", "raw NUL", "dataset name", "variable default"],
)
@pytest.mark.usefixtures("catalog")
async def test_a_string_literal_that_cannot_be_stored_is_refused_every_time(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    query: str,
    field: list[str],
) -> None:
    before = await snapshot(owner)
    for _ in range(3):  # never kept by the document cache
        extensions = refusal(await gql.post(query))
        assert (extensions["code"], extensions["field"]) == ("BAD_USER_INPUT", field)
    assert await snapshot(owner) == before
    await still_serves(http, gql)


@pytest.mark.parametrize(
    "query",
    [
        '{ jobs(operation: "\ud800") { totalCount } }',
        r'{ jobs(operation: "\ud800") { totalCount } }',
    ],
    ids=["raw", "escaped"],
)
async def test_a_lone_surrogate_in_the_query_text_is_a_syntax_error(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant, query: str
) -> None:
    response = await post_raw(http, tenant, as_json({"query": query}))
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert [e["message"].split(":")[0] for e in body["errors"]] == ["Syntax Error"]
    await still_serves(http, gql)


async def upload(
    http: httpx.AsyncClient, tenant: Tenant, data: dict[str, str], *, files: bool = True
) -> httpx.Response:
    return await http.post(
        "/graphql",
        data=data,
        files={"0": ("products.csv", CSV, "text/csv")} if files else None,
        headers={**auth(tenant), "Apollo-Require-Preflight": "true"},
    )


OPERATIONS = json.dumps({"query": IMPORT, "variables": {"upload": None}})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"operations": OPERATIONS, "map": '["variables.upload"]'}, "map"),
        ({"operations": OPERATIONS, "map": '{"0": "variables.upload"}'}, "map"),
        ({"operations": OPERATIONS, "map": '{"0": [7]}'}, "map"),
        ({"operations": OPERATIONS, "map": '{"0": ["variables.upload.x.y"]}'}, "map"),
        ({"operations": OPERATIONS, "map": '{"0": ["query"]}'}, "map"),
        ({"operations": OPERATIONS, "map": '{"1": ["variables.upload"]}'}, "map"),
        ({"operations": OPERATIONS, "map": "{not json"}, "map"),
        ({"operations": "null", "map": '{"0": ["variables.upload"]}'}, "operations"),
        (
            {"operations": "[" + OPERATIONS + "]", "map": '{"0": ["0.variables.upload"]}'},
            "operations",
        ),
        ({"operations": "{not json", "map": '{"0": ["variables.upload"]}'}, "operations"),
        ({"map": '{"0": ["variables.upload"]}'}, "operations"),
        (
            {
                "operations": json.dumps({"query": IMPORT, "variables": None}),
                "map": '{"0": ["variables.upload"]}',
            },
            "map",
        ),
    ],
    ids=[
        "map a list",
        "map path not a list",
        "map path not a string",
        "map path into a null",
        "map path outside variables",
        "map names no file",
        "map not json",
        "operations null",
        "operations a list",
        "operations not json",
        "no operations",
        "variables null",
    ],
)
async def test_a_malformed_upload_is_a_400_naming_operations_or_map(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    tenant: Tenant,
    owner: asyncpg.Connection,
    data: dict[str, str],
    field: str,
) -> None:
    before = await snapshot(owner)
    response = await upload(http, tenant, data)
    assert response.status_code == 400
    extensions = refusal(response)
    assert (extensions["code"], extensions["field"][0]) == ("BAD_REQUEST", field)
    assert await snapshot(owner) == before
    await still_serves(http, gql)


async def test_an_upload_s_variables_are_checked_like_a_json_body(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant, owner: asyncpg.Connection
) -> None:
    query = """mutation($upload: Upload!, $options: BulkOptions) {
      importProducts(upload: $upload, options: $options) { __typename } }"""
    operations = as_json(
        {"query": query, "variables": {"upload": None, "options": {"idempotencyKey": "\ud800"}}}
    )
    before = await snapshot(owner)
    response = await upload(
        http, tenant, {"operations": operations.decode(), "map": '{"0": ["variables.upload"]}'}
    )
    assert response.status_code == 400
    extensions = refusal(response)
    assert (extensions["code"], extensions["field"]) == (
        "BAD_USER_INPUT",
        ["variables", "options", "idempotencyKey"],
    )
    assert await snapshot(owner) == before
    # A well-formed upload still goes through.
    good = await upload(
        http, tenant, {"operations": OPERATIONS, "map": '{"0": ["variables.upload"]}'}
    )
    assert good.status_code == 200, good.text
    assert good.json()["data"]["importProducts"]["__typename"] != "Rejected"


async def test_a_mutation_over_get_is_a_405_that_allows_post(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant, owner: asyncpg.Connection
) -> None:
    await make_dataset(owner, tenant, "Kept")
    before = await snapshot(owner)
    response = await http.get(
        "/graphql",
        params={"query": 'mutation { createDataset(name: "Via GET") { __typename } }'},
        headers=auth(tenant),
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert refusal(response)["code"] == "METHOD_NOT_ALLOWED"
    assert await snapshot(owner) == before
    query = await http.get(
        "/graphql", params={"query": "{ datasets { totalCount } }"}, headers=auth(tenant)
    )
    assert query.status_code == 200
    assert query.json()["data"]["datasets"]["totalCount"] == 1


@pytest.mark.parametrize(
    ("params", "status", "code", "field"),
    [
        ({"query": SEARCH, "variables": "{not json"}, 400, "BAD_REQUEST", ["variables"]),
        ({"query": SEARCH, "variables": "[1]"}, 400, "BAD_REQUEST", ["variables"]),
        (
            {"query": SEARCH, "variables": '{"filter": {"search": "\\u0000"}}'},
            400,
            "BAD_USER_INPUT",
            ["variables", "filter", "search"],
        ),
    ],
    ids=["variables not json", "variables a list", "NUL in variables"],
)
async def test_query_parameters_of_a_get_are_checked_like_a_body(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    tenant: Tenant,
    params: dict[str, str],
    status: int,
    code: str,
    field: list[str],
) -> None:
    response = await http.get("/graphql", params=params, headers=auth(tenant))
    assert response.status_code == status
    extensions = refusal(response)
    assert (extensions["code"], extensions["field"]) == (code, field)
    await still_serves(http, gql)


async def test_a_body_that_is_not_json_is_a_415(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant
) -> None:
    response = await http.post(
        "/graphql",
        content=b"{ __typename }",
        headers={**auth(tenant), "Content-Type": "application/graphql"},
    )
    assert response.status_code == 415
    assert refusal(response)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    await still_serves(http, gql)
