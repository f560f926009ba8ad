"""What a client sends past the schema's types (forged cursors, ids and instants past what
the database holds, LIKE wildcards, upload lines nested thousands deep, stray quotes) gets
a typed error naming the field, or a row error in its place: never a server error, and a
normal request works after it."""

from __future__ import annotations

import base64
import json
from typing import Any

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from bulkops.storage import Storage
from bulkops.uploads import MAX_JSON_DEPTH
from tests.api.queries import DELETE, SET_STATUS
from tests.api.test_import_products import IMPORT
from tests.api.test_match_products import MATCH
from tests.support import GraphQLClient, Tenant, make_dataset, make_products, run_worker


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


PRODUCTS = """
query($first: Int, $after: String, $filter: ProductFilter) {
  products(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { endCursor } edges { node { sku name } }
  }
}"""

DATASETS = """
query($first: Int, $after: String) {
  datasets(first: $first, after: $after) {
    totalCount pageInfo { endCursor } edges { node { name } }
  }
}"""

JOBS = """
query($first: Int, $after: String) {
  jobs(first: $first, after: $after) { totalCount pageInfo { endCursor } edges { node { id } } }
}"""

JOB_ERRORS = """
query($id: ID!, $first: Int, $after: String) {
  job(id: $id) {
    errors(first: $first, after: $after) {
      totalCount pageInfo { endCursor } edges { node { row code } }
    }
  }
}"""

MATCH_RESULTS = """
query($id: ID!, $first: Int, $after: String) {
  job(id: $id) {
    matchResults(first: $first, after: $after) {
      totalCount pageInfo { endCursor } edges { node { row } }
    }
  }
}"""

EXPORT = """
mutation($filter: ProductFilter) {
  exportProducts(filter: $filter) { __typename ... on Rejected { code message field } }
}"""

ADD_TO_DATASET = """
mutation($datasetId: ID!, $selection: ProductSelection!) {
  addProductsToDataset(datasetId: $datasetId, selection: $selection) {
    __typename ... on Rejected { code message field }
  }
}"""

DELETE_IMAGES = """
mutation($selection: ImageSelection!) {
  deleteImages(selection: $selection) { __typename ... on Rejected { code message field } }
}"""

UUID = "6f1c9a52-3c1e-4d2b-9a8e-2f0f4b1d7c11"
# Cursors a client can forge for a connection whose own cursors are `kind:<number>`.
NUMBER_CURSORS = [
    "{kind}:99999999999999999999",  # past bigint
    "{kind}:9223372036854775808",  # bigint's largest, plus one
    "{kind}:-5",
    "{kind}:abc",
    "{kind}:",
    "{kind}:1_0",  # int() would read 10
    "{kind}: 7",
    "{kind}:\u0667",  # an Arabic-Indic seven, which int() reads too
    "{kind}:" + "9" * 5000,
    "{other}:1",  # another connection's
    "job:2025-01-01T00:00:00+00:00|" + UUID,
]
JOB_CURSORS = [
    "job:0001-01-01T00:00:00+05:00|" + UUID,  # no UTC equivalent
    "job:9999-12-31T23:59:59-05:00|" + UUID,
    "job:2025-01-01T00:00:00+00:00|not-a-uuid",
    "job:not-a-time|" + UUID,
    "job:99999999999999999999",
    "product:1",
]


@pytest.fixture
async def catalog(owner: asyncpg.Connection, storage: Storage, tenant: Tenant) -> None:
    await make_products(owner, storage, tenant, 3)
    await owner.execute(
        """INSERT INTO products (tenant_id, sku, name)
           VALUES ($1, 'PCT-1', '50% off'), ($1, 'UND-1', 'snake_case tea'),
                  ($1, 'BSL-1', 'back\\slash')""",
        tenant.id,
    )
    await make_dataset(owner, tenant, "First")
    await make_dataset(owner, tenant, "Second")


@pytest.fixture
async def match_job(gql: GraphQLClient, settings: Settings, catalog: None) -> str:
    """A finished matchProducts job with two item errors (and another job before it)."""
    rows = [
        {"sku": "SKU-0000001"},
        {"brand": "nothing to match on"},
        {"sku": "SKU-0000002"},
        {"brand": "nothing either"},
    ]
    await gql(MATCH, {"rows": rows[:1], "options": {"mode": "BACKGROUND"}})
    queued = await gql(MATCH, {"rows": rows, "options": {"mode": "BACKGROUND"}})
    await run_worker(settings)
    job_id: str = queued["matchProducts"]["job"]["id"]
    return job_id


def refusal(response: httpx.Response) -> tuple[Any, ...]:
    """The one error of a GraphQL response: its code, field and message."""
    assert response.status_code == 200, response.text
    body = response.json()
    (error,) = body["errors"]
    return error["extensions"].get("code"), error["extensions"].get("field"), error["message"]


CONNECTIONS = {
    "products": (PRODUCTS, "product", NUMBER_CURSORS, lambda data: data["products"]),
    "datasets": (DATASETS, "dataset", NUMBER_CURSORS, lambda data: data["datasets"]),
    "jobs": (JOBS, "job", JOB_CURSORS, lambda data: data["jobs"]),
    "Job.errors": (JOB_ERRORS, "error", NUMBER_CURSORS, lambda data: data["job"]["errors"]),
    "Job.matchResults": (
        MATCH_RESULTS,
        "row",
        [*NUMBER_CURSORS, "{kind}:2147483648"],  # past integer, the rows' column
        lambda data: data["job"]["matchResults"],
    ),
}


@pytest.mark.parametrize("name", list(CONNECTIONS))
async def test_a_forged_cursor_is_refused_naming_after_on_every_connection(
    gql: GraphQLClient, match_job: str, name: str
) -> None:
    document, kind, forged, page_of = CONNECTIONS[name]
    variables: dict[str, Any] = {"id": match_job} if "$id" in document else {}
    for text in forged:
        other = "product" if kind == "dataset" else "dataset"
        after = cursor(text.format(kind=kind, other=other))
        response = await gql.post(document, {**variables, "after": after})
        assert refusal(response) == (
            "BAD_USER_INPUT",
            ["after"],
            "The cursor is not valid here.",
        ), text
    for after in ["!!!not base64", "é", "", "x" * 10_000]:
        response = await gql.post(document, {**variables, "after": after})
        assert refusal(response)[:2] == ("BAD_USER_INPUT", ["after"]), after
    for first in [-1, 501]:
        response = await gql.post(document, {**variables, "first": first})
        assert refusal(response)[:2] == ("BAD_USER_INPUT", ["first"]), first

    first_page = page_of(await gql(document, {**variables, "first": 1}))
    assert first_page["totalCount"] >= 2
    rest = page_of(await gql(document, {**variables, "after": first_page["pageInfo"]["endCursor"]}))
    assert len(first_page["edges"]) + len(rest["edges"]) == first_page["totalCount"]
    if kind != "job":
        # A number cursor of 0 is before the first item: every item follows it.
        start = page_of(await gql(document, {**variables, "after": cursor(f"{kind}:0")}))
        assert start["edges"] == first_page["edges"] + rest["edges"]


OUT_OF_RANGE = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize("instant", OUT_OF_RANGE)
@pytest.mark.parametrize("bound", ["createdAfter", "createdBefore"])
async def test_an_instant_without_a_utc_equivalent_is_refused_naming_the_field(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    bound: str,
    instant: str,
) -> None:
    response = await gql.post(PRODUCTS, {"filter": {bound: instant}})
    code, field, message = refusal(response)
    assert (code, field) == ("BAD_USER_INPUT", ["filter", bound])
    assert instant in message

    statuses = await owner.fetchval("SELECT string_agg(status, ',' ORDER BY id) FROM products")
    result = (
        await gql(SET_STATUS, {"selection": {"filter": {bound: instant}}, "status": "ACTIVE"})
    )["setProductStatus"]
    assert (result["code"], result["field"]) == ("BAD_USER_INPUT", ["selection", "filter", bound])
    assert await owner.fetchval("SELECT string_agg(status, ',' ORDER BY id) FROM products") == (
        statuses
    )
    result = (await gql(EXPORT, {"filter": {bound: instant}}))["exportProducts"]
    assert (result["code"], result["field"]) == ("BAD_USER_INPUT", ["filter", bound])

    headers = {"Authorization": f"Bearer {tenant.token}"}
    response = await http.get("/export/products.csv", params={bound: instant}, headers=headers)
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": [bound]}

    # An instant without an offset is UTC, as in the download.
    page = (await gql(PRODUCTS, {"filter": {"createdAfter": "2000-01-01T00:00:00"}}))["products"]
    assert page["totalCount"] == 6
    response = await http.get("/export/products.csv", params={bound: "2000-01-01"}, headers=headers)
    assert response.status_code == 200


BIGINT_PLUS_ONE = str(2**63)


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize(
    ("document", "variables", "field"),
    [
        (DELETE, {"selection": {"ids": ["1", BIGINT_PLUS_ONE]}}, ["selection", "ids", "1"]),
        (DELETE, {"selection": {"ids": ["-1"]}}, ["selection", "ids", "0"]),
        (DELETE, {"selection": {"ids": ["9" * 5000]}}, ["selection", "ids", "0"]),
        (
            DELETE,
            {"selection": {"filter": {"datasetId": BIGINT_PLUS_ONE}}},
            ["selection", "filter", "datasetId"],
        ),
        (
            ADD_TO_DATASET,
            {"datasetId": BIGINT_PLUS_ONE, "selection": {"ids": ["1"]}},
            ["datasetId"],
        ),
        (DELETE_IMAGES, {"selection": {"ids": [BIGINT_PLUS_ONE]}}, ["selection", "ids", "0"]),
        (
            DELETE_IMAGES,
            {"selection": {"products": {"ids": [BIGINT_PLUS_ONE]}}},
            ["selection", "products", "ids", "0"],
        ),
        (EXPORT, {"filter": {"datasetId": "-3"}}, ["filter", "datasetId"]),
    ],
)
async def test_an_id_past_bigint_or_negative_is_refused_naming_it(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    document: str,
    variables: dict[str, Any],
    field: list[str],
) -> None:
    before = await owner.fetchval("SELECT count(*) FROM products")
    result = next(iter((await gql(document, variables)).values()))
    assert (result["code"], result["field"]) == ("INVALID_ID", field)
    assert len(result["message"]) < 200
    assert await owner.fetchval("SELECT count(*) FROM products") == before

    code, reason, _ = refusal(await gql.post(PRODUCTS, {"filter": {"datasetId": BIGINT_PLUS_ONE}}))
    assert (code, reason) == ("INVALID_ID", ["filter", "datasetId"])
    found = await gql("query($id: ID!) { product(id: $id) { sku } }", {"id": BIGINT_PLUS_ONE})
    assert found == {"product": None}
    # bigint's largest id is a valid id, of no product.
    result = (await gql(DELETE, {"selection": {"ids": [str(2**63 - 1)]}}))["deleteProducts"]
    assert (result["code"], result["field"]) == ("NOT_FOUND", ["selection", "ids"])


@pytest.mark.usefixtures("catalog")
async def test_like_wildcards_in_search_are_plain_characters(
    gql: GraphQLClient, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    async def names(search: str) -> list[str]:
        page = (await gql(PRODUCTS, {"filter": {"search": search}}))["products"]
        return [edge["node"]["name"] for edge in page["edges"]]

    assert await names("%") == ["50% off"]
    assert await names("_") == ["snake_case tea"]
    assert await names("\\") == ["back\\slash"]
    assert await names("e_c") == ["snake_case tea"]
    assert await names("%%") == []
    assert await names("OFF") == ["50% off"]
    assert len(await names("product")) == 3

    headers = {"Authorization": f"Bearer {tenant.token}"}
    response = await http.get("/export/products.jsonl", params={"search": "_"}, headers=headers)
    assert [json.loads(line)["sku"] for line in response.text.splitlines()] == ["UND-1"]
    dry = (
        await gql(
            SET_STATUS,
            {
                "selection": {"filter": {"search": "%"}},
                "status": "ARCHIVED",
                "options": {"dryRun": True},
            },
        )
    )["setProductStatus"]
    assert (dry["matched"], [p["sku"] for p in dry["sample"]]) == (1, ["PCT-1"])


async def post_file(
    http: httpx.AsyncClient, tenant: Tenant, document: str, content: bytes, filename: str
) -> dict[str, Any]:
    operations = {"query": document, "variables": {"upload": None, "options": {"mode": "INLINE"}}}
    response = await http.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.upload"]}),
        },
        files={"0": (filename, content, "application/octet-stream")},
        headers={"Authorization": f"Bearer {tenant.token}", "Apollo-Require-Preflight": "true"},
    )
    body = response.json()
    assert response.status_code == 200, body
    assert not body.get("errors"), body
    result: dict[str, Any] = next(iter(body["data"].values()))
    return result


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def row_errors(result: dict[str, Any]) -> list[tuple[int, str | None, str]]:
    return [(e["row"], e.get("column"), e["code"]) for e in result["errors"]]


async def test_unreadable_import_lines_are_row_errors_and_the_others_land(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant
) -> None:
    jsonl = (
        f'{{"sku": "D-1", "name": "Deep", "attributes": {{"a": {deep(5000)}}}}}\n'  # 1
        f"{deep(5000)}\n"  # 2
        '{"sku": "N-1", "name": "Not a number", "price": NaN}\n'  # 3
        '{"sku": "I-1", "name": "Infinite", "attributes": {"x": 1e400}}\n'  # 4
        f'{{"sku": "B-1", "name": "Big", "price": 1{"0" * 5000}}}\n'  # 5
        # The line's object, attributes and a: as deep as a line may nest.
        f'{{"sku": "OK-1", "name": "Fine", "attributes": {{"a": {deep(MAX_JSON_DEPTH - 2)}}}}}\n'
    ).encode()
    result = await post_file(http, tenant, IMPORT, jsonl, "rows.jsonl")
    assert row_errors(result) == [(n, None, "MALFORMED_ROW") for n in range(1, 6)]
    messages = [e["message"] for e in result["errors"]]
    assert f"more than {MAX_JSON_DEPTH} deep" in messages[0]
    assert "NaN is not a JSON value" in messages[2]
    assert "out of range (1e400)" in messages[3]
    assert (result["succeeded"], result["failed"]) == (1, 5)

    csv = (
        "sku,name,attributes,identifiers\n"
        'q"uote,z,,\n'  # 2
        f"D-2,Deep identifiers,,{deep(5000)}\n"  # 3
        'H-1,Huge,"{""n"": 1e5000}",\n'  # 4
        f'H-2,Huge int,"{{""n"": -1{"0" * 400}}}",\n'  # 5
        'OK-2,"Quoted ""name""",,\n'  # 6
    ).encode()
    result = await post_file(http, tenant, IMPORT, csv, "rows.csv")
    assert row_errors(result) == [
        (2, None, "MALFORMED_ROW"),
        (3, "identifiers", "MALFORMED_ROW"),
        (4, "attributes", "INVALID_ATTRIBUTES"),
        (5, "attributes", "INVALID_ATTRIBUTES"),
    ]
    assert "quote inside a field" in result["errors"][0]["message"]
    assert "out of range (1e5000)" in result["errors"][2]["message"]
    assert (result["succeeded"], result["failed"]) == (1, 4)

    page = (await gql(PRODUCTS, {}))["products"]
    assert sorted(edge["node"]["sku"] for edge in page["edges"]) == ["OK-1", "OK-2"]
    attributes = await gql(
        '{ products(filter: {search: "Fine"}) { edges { node { attributes } } } }'
    )
    (edge,) = attributes["products"]["edges"]
    assert edge["node"]["attributes"] == {"a": json.loads(deep(MAX_JSON_DEPTH - 2))}


@pytest.mark.usefixtures("catalog")
async def test_unreadable_match_lines_are_item_errors_and_the_others_match(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    jsonl = (
        f'{{"sku": "SKU-0000001", "identifiers": {deep(5000)}}}\n'  # 1
        '{"barcode": NaN}\n'  # 2
        f'{{"barcode": 1{"0" * 5000}}}\n'  # 3
        '{"sku": "SKU-0000002"}\n'  # 4
    ).encode()
    result = await post_file(http, tenant, MATCH, jsonl, "rows.jsonl")
    assert row_errors(result) == [(n, None, "MALFORMED_ROW") for n in (1, 2, 3)]
    matched = {r["row"]: (r["product"] or {}).get("sku") for r in result["rows"]}
    assert matched[4] == "SKU-0000002"

    csv = (
        "sku,identifiers,note\n"
        f"SKU-0000001,{deep(5000)},\n"  # 2
        'SKU-0000002,,say "hi"\n'  # 3
        "SKU-0000003,,fine\n"  # 4
    ).encode()
    result = await post_file(http, tenant, MATCH, csv, "rows.csv")
    assert row_errors(result) == [(2, None, "MALFORMED_ROW"), (3, None, "MALFORMED_ROW")]
    matched = {r["row"]: (r["product"] or {}).get("sku") for r in result["rows"]}
    assert matched[4] == "SKU-0000003"
