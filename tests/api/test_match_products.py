"""matchProducts: the rules and their priority, candidates, inline against background,
tenants, the dataset option, the results connection and download, and bad input."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from tests.api.queries import JOB
from tests.support import GraphQLClient, Tenant, make_dataset, run_worker

MATCH = """
mutation($rows: [MatchRowInput!], $upload: Upload, $options: BulkOptions,
         $datasetId: ID, $threshold: Float! = 0.6) {
  matchProducts(rows: $rows, upload: $upload, options: $options,
                addToDatasetId: $datasetId, fuzzyThreshold: $threshold) {
    __typename
    ... on MatchProductsSummary {
      matched succeeded failed skipped dryRun matchedRows unmatchedRows addedToDataset
      errors { itemId row code message }
      sample { sku }
      rows { row product { sku } matchedBy score candidates { sku } candidateScores error }
    }
    ... on JobQueued { job { id status total } }
    ... on Rejected { code message field }
  }
}"""

RESULTS = """
query($id: ID!, $first: Int, $after: String, $matched: Boolean, $matchedBy: String) {
  job(id: $id) {
    status succeeded failed skipped result
    matchResults(first: $first, after: $after, matched: $matched, matchedBy: $matchedBy) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { cursor node { row product { sku } matchedBy score candidates { sku } error } }
    }
  }
}"""

# (sku, barcode, name, brand, identifiers)
CATALOG: list[tuple[str, str | None, str, str | None, dict[str, str]]] = [
    ("TEA-1", "4006381333931", "Organic Green Tea 100g", "Acme", {}),
    ("CHOC-1", None, "Dark Chocolate 70%", "Acme", {"GTIN": "0001234567895"}),
    ("WATER-1", None, "Sparkling Water 1L", "Zeta", {"MPN": "ZW-1"}),
    ("OIL-1", None, "Olive Oil Extra Virgin 500ml", "Nova", {}),
    ("OIL-2", None, "Olive Oil Classic 500ml", "Nova", {}),
    ("OIL-3", None, "Olive Oil Light 1l", "Nova", {}),
    ("HONEY-1", None, "Wild Flower Honey", None, {}),
]
# Another tenant's products: never matched, never candidates.
FOREIGN = [
    ("SECRET-1", "7777777777777", "Secret Sauce", "Acme", {"MPN": "SEC-1"}),
    ("OIL-9", None, "Olive Oil Extra Virgin 500ml", "Nova", {}),
]


async def add_catalog(
    owner: asyncpg.Connection,
    tenant: Tenant,
    products: list[tuple[str, str | None, str, str | None, dict[str, str]]],
) -> dict[str, int]:
    """Insert the products; their ids by SKU."""
    ids: dict[str, int] = {}
    for sku, barcode, name, brand, identifiers in products:
        product_id = await owner.fetchval(
            """INSERT INTO products (tenant_id, sku, barcode, name, brand)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            tenant.id,
            sku,
            barcode,
            name,
            brand,
        )
        for kind, value in identifiers.items():
            await owner.execute(
                """INSERT INTO product_identifiers (tenant_id, product_id, kind, value)
                   VALUES ($1, $2, $3, $4)""",
                tenant.id,
                product_id,
                kind,
                value,
            )
        ids[sku] = product_id
    return ids


@pytest.fixture
async def catalog(
    owner: asyncpg.Connection, tenant: Tenant, other_tenant: Tenant
) -> dict[str, int]:
    await add_catalog(owner, other_tenant, FOREIGN)
    return await add_catalog(owner, tenant, CATALOG)


async def match(gql: GraphQLClient, rows: list[dict[str, Any]], **variables: Any) -> Any:
    return (await gql(MATCH, {"rows": rows, **variables}))["matchProducts"]


def by_row(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["row"]: r for r in result["rows"]}


def outcome(row: dict[str, Any]) -> tuple[str | None, str | None]:
    return (row["product"]["sku"] if row["product"] else None, row["matchedBy"])


async def test_each_rule_matches_its_rows(gql: GraphQLClient, catalog: dict[str, int]) -> None:
    rows = [
        {"barcode": " 4006381333931 "},
        {"barcode": "0001234567895"},
        {"identifiers": [{"kind": "gtin", "value": "0001234567895"}]},
        {"identifiers": [{"kind": "mpn", "value": "ZW-1"}]},
        {"sku": "OIL-2"},
        {"name": " organic   GREEN tea 100G ", "brand": "acme"},
        {"name": "wild flower honey"},
        {"name": "Olive Oil Extra Virgn 500ml", "brand": "Nova"},
    ]
    result = await match(gql, rows)
    assert result["__typename"] == "MatchProductsSummary", result
    assert [outcome(r) for r in result["rows"]] == [
        ("TEA-1", "BARCODE"),
        ("CHOC-1", "BARCODE"),
        ("CHOC-1", "BARCODE"),
        ("WATER-1", "IDENTIFIER"),
        ("OIL-2", "SKU"),
        ("TEA-1", "NAME_BRAND"),
        ("HONEY-1", "NAME_BRAND"),
        ("OIL-1", "FUZZY_NAME"),
    ]
    assert [r["row"] for r in result["rows"]] == list(range(1, 9))
    assert [r["score"] for r in result["rows"][:7]] == [1.0] * 7
    assert 0.6 <= result["rows"][7]["score"] < 1.0
    assert (result["matched"], result["succeeded"], result["skipped"], result["failed"]) == (
        8,
        8,
        0,
        0,
    )
    assert (result["matchedRows"], result["unmatchedRows"]) == (8, 0)


async def test_a_row_matching_several_rules_gets_the_first(
    gql: GraphQLClient, catalog: dict[str, int]
) -> None:
    tea = {"name": "Organic Green Tea 100g", "brand": "Acme"}
    water = [{"kind": "MPN", "value": "ZW-1"}]
    rows = [
        {"row": 10, "barcode": "4006381333931", "sku": "OIL-2", "identifiers": water, **tea},
        {"row": 20, "barcode": "0000000000000", "sku": "OIL-2", "identifiers": water, **tea},
        {"row": 30, "barcode": "0000000000000", "sku": "OIL-2", **tea},
        {"row": 40, "sku": "NOPE", "name": "Organic Green Tea 100 g", "brand": "Acme"},
        {"row": 50, "sku": "NOPE", "name": "Organic Green Tea 100g", "brand": "Acme"},
    ]
    result = await match(gql, rows)
    assert [(r["row"], *outcome(r)) for r in result["rows"]] == [
        (10, "TEA-1", "BARCODE"),
        (20, "WATER-1", "IDENTIFIER"),
        (30, "OIL-2", "SKU"),
        (40, "TEA-1", "FUZZY_NAME"),
        (50, "TEA-1", "NAME_BRAND"),
    ]


async def test_the_fuzzy_threshold_decides_and_unmatched_rows_get_candidates(
    gql: GraphQLClient, catalog: dict[str, int]
) -> None:
    rows = [
        {"name": "Olive Oil Extra Virgn 500ml", "brand": "Nova"},
        {"name": "Olive Oil", "brand": "Nova"},
        {"name": "olive oil extra virgin", "brand": "Acme"},
        {"name": "olive oil extra virgin"},
        {"name": "Zzzz qqqq", "brand": "Nova"},
        {"sku": "NOPE"},
    ]
    strict = by_row(await match(gql, rows, threshold=0.95))
    assert outcome(strict[1]) == (None, None)
    assert strict[1]["candidates"][0]["sku"] == "OIL-1"
    # Within the brand, best first.
    loose = by_row(await match(gql, rows))
    assert outcome(loose[1]) == ("OIL-1", "FUZZY_NAME")
    assert outcome(loose[2]) == (None, None)
    assert {c["sku"] for c in loose[2]["candidates"]} <= {"OIL-1", "OIL-2", "OIL-3"}
    assert len(loose[2]["candidates"]) == 3
    scores = loose[2]["candidateScores"]
    assert scores == sorted(scores, reverse=True)
    assert all(s < 0.6 for s in scores)
    # Another brand has no such product: no candidates from other brands.
    assert (outcome(loose[3]), loose[3]["candidates"]) == ((None, None), [])
    # No brand: candidates from the whole catalog, never another tenant's.
    assert loose[4]["candidates"][0]["sku"] == "OIL-1"
    assert outcome(loose[4]) == (None, None)
    assert (loose[5]["candidates"], loose[6]["candidates"]) == ([], [])
    lenient = by_row(await match(gql, rows, threshold=0.3))
    assert outcome(lenient[2])[1] == "FUZZY_NAME"


MIXED = [
    {"row": 3, "barcode": "4006381333931"},
    {"row": 5, "identifiers": [{"kind": "MPN", "value": "ZW-1"}]},
    {"row": 8, "sku": "OIL-2", "name": "whatever"},
    {"row": 13, "name": "Dark chocolate 70%", "brand": "ACME"},
    {"row": 21, "name": "Olive Oil Extra Virgn 500ml", "brand": "Nova"},
    {"row": 34, "name": "Olive Oil", "brand": "Nova"},
    {"row": 55, "brand": "Nova"},
    {"row": 89, "barcode": "7777777777777", "sku": "SECRET-1", "name": "Secret Sauce"},
    {"row": 144, "identifiers": [{"kind": "MPN", "value": "SEC-1"}], "brand": "Acme"},
]


def shape(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["row"],
        *outcome(row),
        row["score"],
        [c["sku"] for c in row["candidates"]],
        row["error"],
    )


async def test_inline_and_background_give_the_same_results(
    gql: GraphQLClient, catalog: dict[str, int], settings: Settings
) -> None:
    inline = await match(gql, MIXED)
    queued = await match(gql, MIXED, options={"mode": "BACKGROUND"})
    assert queued["__typename"] == "JobQueued", queued
    assert queued["job"]["total"] == len(MIXED)
    await run_worker(settings.model_copy(update={"batch_size": 2}))
    job = (await gql(RESULTS, {"id": queued["job"]["id"], "first": 100}))["job"]
    assert job["status"] == "PARTIAL"
    nodes = [e["node"] for e in job["matchResults"]["edges"]]
    assert [shape(n) for n in nodes] == [shape(r) for r in inline["rows"]]
    for key in ("succeeded", "failed", "skipped"):
        assert job[key] == inline[key], key
    assert (inline["succeeded"], inline["skipped"], inline["failed"]) == (5, 3, 1)
    assert job["result"]["matchedRows"] == inline["matchedRows"] == 5
    assert job["result"]["unmatchedRows"] == inline["unmatchedRows"] == 3
    assert job["result"]["matchedByFuzzyName"] == 1
    full = (await gql(JOB, {"id": queued["job"]["id"]}))["job"]
    assert [(e["node"]["code"]) for e in full["errors"]["edges"]] == ["NOTHING_TO_MATCH"]


async def test_another_tenants_products_are_never_matched_nor_candidates(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: dict[str, int], other_tenant: Tenant
) -> None:
    rows = [
        {"barcode": "7777777777777"},
        {"identifiers": [{"kind": "MPN", "value": "SEC-1"}]},
        {"sku": "SECRET-1"},
        {"name": "Secret Sauce", "brand": "Acme"},
        {"name": "Secret Sauce"},
    ]
    result = await match(gql, rows, threshold=0.1)
    assert result["unmatchedRows"] == 5
    assert all(r["product"] is None for r in result["rows"])
    foreign = [
        r["id"]
        for r in await owner.fetch("SELECT id FROM products WHERE tenant_id = $1", other_tenant.id)
    ]
    stored = await owner.fetch("SELECT product_id, candidates FROM match_results")
    assert len(stored) == 5
    for row in stored:
        assert row["product_id"] is None
        assert not {c["id"] for c in json.loads(row["candidates"])} & set(foreign)
    # The other tenant matches its own.
    theirs = await match(GraphQLClient(gql.http, other_tenant.token), rows[:3])
    assert [outcome(r) for r in theirs["rows"]] == [
        ("SECRET-1", "BARCODE"),
        ("SECRET-1", "IDENTIFIER"),
        ("SECRET-1", "SKU"),
    ]


DATASET = """query($id: ID!) { dataset(id: $id) { productCount } }"""


async def dataset_skus(owner: asyncpg.Connection, dataset_id: int) -> set[str]:
    rows = await owner.fetch(
        """SELECT p.sku FROM dataset_products dp JOIN products p ON p.id = dp.product_id
           WHERE dp.dataset_id = $1""",
        dataset_id,
    )
    return {r["sku"] for r in rows}


@pytest.mark.parametrize("mode", ["INLINE", "BACKGROUND"])
async def test_matched_products_are_added_to_a_dataset(
    mode: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    catalog: dict[str, int],
    settings: Settings,
) -> None:
    dataset_id = await make_dataset(owner, tenant, "Matched")
    await owner.execute(
        "INSERT INTO dataset_products (tenant_id, dataset_id, product_id) VALUES ($1, $2, $3)",
        tenant.id,
        dataset_id,
        catalog["TEA-1"],
    )
    rows = [*MIXED, {"row": 200, "sku": "TEA-1"}]
    result = await match(gql, rows, datasetId=str(dataset_id), options={"mode": mode})
    if mode == "BACKGROUND":
        await run_worker(settings.model_copy(update={"batch_size": 3}))
        result = (await gql(RESULTS, {"id": result["job"]["id"]}))["job"]["result"]
    # TEA-1 was in it already (matched twice): four products added.
    assert result["addedToDataset"] == 4
    assert await dataset_skus(owner, dataset_id) == {"TEA-1", "WATER-1", "OIL-2", "CHOC-1", "OIL-1"}


async def test_a_dry_run_adds_nothing_and_keeps_nothing(
    gql: GraphQLClient, owner: asyncpg.Connection, tenant: Tenant, catalog: dict[str, int]
) -> None:
    dataset_id = await make_dataset(owner, tenant, "Matched")
    result = await match(gql, MIXED, datasetId=str(dataset_id), options={"dryRun": True})
    assert (result["dryRun"], result["matchedRows"], result["addedToDataset"]) == (True, 5, 5)
    assert {p["sku"] for p in result["sample"]} == {"TEA-1", "WATER-1", "OIL-2", "CHOC-1", "OIL-1"}
    assert result["rows"] == []
    assert await dataset_skus(owner, dataset_id) == set()
    assert await owner.fetchval("SELECT count(*) FROM match_rows") == 0


async def test_an_idempotency_key_replays_the_rows(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: dict[str, int]
) -> None:
    options = {"idempotencyKey": "match-1"}
    first = await match(gql, MIXED, options=options)
    again = await match(gql, MIXED, options=options)
    assert again == first
    assert await owner.fetchval("SELECT count(*) FROM match_inputs") == 1
    other = await match(gql, MIXED[:2], options=options)
    assert other["code"] == "IDEMPOTENCY_KEY_REUSED"


BACKGROUND = {"mode": "BACKGROUND"}


async def background_job(gql: GraphQLClient, settings: Settings, rows: list[dict[str, Any]]) -> str:
    queued = await match(gql, rows, options={"mode": "BACKGROUND"})
    await run_worker(settings.model_copy(update={"batch_size": 4}))
    job_id: str = queued["job"]["id"]
    return job_id


async def test_a_jobs_results_are_a_connection(
    gql: GraphQLClient, catalog: dict[str, int], settings: Settings
) -> None:
    job_id = await background_job(gql, settings, MIXED)
    page = (await gql(RESULTS, {"id": job_id, "first": 4}))["job"]["matchResults"]
    assert (page["totalCount"], page["pageInfo"]["hasNextPage"]) == (9, True)
    rows = [e["node"]["row"] for e in page["edges"]]
    after = page["pageInfo"]["endCursor"]
    while after:
        page = (await gql(RESULTS, {"id": job_id, "first": 4, "after": after}))["job"][
            "matchResults"
        ]
        rows += [e["node"]["row"] for e in page["edges"]]
        after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert rows == [r["row"] for r in MIXED]

    async def nodes(**filters: Any) -> list[tuple[Any, ...]]:
        found = (await gql(RESULTS, {"id": job_id, **filters}))["job"]["matchResults"]
        assert found["totalCount"] == len(found["edges"])
        return [(e["node"]["row"], *outcome(e["node"])) for e in found["edges"]]

    assert await nodes(matched=True) == [
        (3, "TEA-1", "BARCODE"),
        (5, "WATER-1", "IDENTIFIER"),
        (8, "OIL-2", "SKU"),
        (13, "CHOC-1", "NAME_BRAND"),
        (21, "OIL-1", "FUZZY_NAME"),
    ]
    assert [r for r, *_ in await nodes(matched=False)] == [34, 55, 89, 144]
    assert await nodes(matchedBy="SKU") == [(8, "OIL-2", "SKU")]
    response = await gql.post(RESULTS, {"id": job_id, "matchedBy": "PSYCHIC"})
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    other = await gql(
        """mutation { setProductStatus(selection: {filter: {}}, status: ACTIVE,
                                       options: {mode: BACKGROUND}) {
             ... on JobQueued { job { id matchResults { totalCount } } } } }"""
    )
    assert other["setProductStatus"]["job"]["matchResults"] is None


async def test_a_jobs_results_download_as_csv_and_jsonl(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    catalog: dict[str, int],
    settings: Settings,
) -> None:
    job_id = await background_job(gql, settings, MIXED)
    auth = {"Authorization": f"Bearer {tenant.token}"}
    response = await http.get(f"/jobs/{job_id}/match-results.csv", headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert f"match-results-{job_id}.csv" in response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert list(table[0]) == [
        "row",
        "barcode",
        "sku",
        "name",
        "brand",
        "identifiers",
        "match_status",
        "match_product_id",
        "match_sku",
        "match_name",
        "match_by",
        "match_score",
        "match_candidates",
        "match_error",
    ]
    assert [int(r["row"]) for r in table] == [r["row"] for r in MIXED]
    first = table[0]
    assert (first["barcode"], first["match_status"], first["match_sku"]) == (
        "4006381333931",
        "MATCHED",
        "TEA-1",
    )
    assert (first["match_product_id"], first["match_by"], float(first["match_score"])) == (
        str(catalog["TEA-1"]),
        "BARCODE",
        1.0,
    )
    assert json.loads(table[1]["identifiers"]) == [{"kind": "MPN", "value": "ZW-1"}]
    olive = table[5]
    assert (olive["match_status"], olive["match_sku"], olive["sku"]) == ("UNMATCHED", "", "")
    candidates = json.loads(olive["match_candidates"])
    assert sorted(c["sku"] for c in candidates) == ["OIL-1", "OIL-2", "OIL-3"]
    assert all(0 < c["score"] < 0.6 for c in candidates)
    assert (table[6]["match_status"], table[6]["match_error"]) == (
        "INVALID",
        "Row 55 has no barcode, identifier, SKU or name to match on.",
    )

    response = await http.get(f"/jobs/{job_id}/match-results.jsonl", headers=auth)
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["row"] for line in lines] == [r["row"] for r in MIXED]
    assert lines[2]["input"] == {
        "barcode": None,
        "sku": "OIL-2",
        "name": "whatever",
        "brand": None,
        "identifiers": None,
    }
    assert lines[2]["match"] | {"productId": None} == {
        "status": "MATCHED",
        "productId": None,
        "sku": "OIL-2",
        "name": "Olive Oil Classic 500ml",
        "matchedBy": "SKU",
        "score": 1.0,
        "candidates": [],
        "error": None,
    }

    assert (await http.get(f"/jobs/{job_id}/match-results.csv")).status_code == 401
    foreign = {"Authorization": f"Bearer {other_tenant.token}"}
    missing = await http.get(f"/jobs/{job_id}/match-results.csv", headers=foreign)
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert (await http.get("/jobs/nope/match-results.jsonl", headers=auth)).status_code == 404


REJECTIONS: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("neither rows nor upload", {"rows": None}, "INVALID_INPUT", ["rows"]),
    ("no rows", {"rows": []}, "EMPTY_ROWS", ["rows"]),
    (
        "more rows than the inline limit",
        {"rows": [{"sku": f"S{i}"} for i in range(1001)]},
        "TOO_MANY_ROWS",
        ["rows"],
    ),
    (
        "a row number twice",
        {"rows": [{"row": 2, "sku": "A"}, {"sku": "B"}]},
        "DUPLICATE_ROW",
        ["rows", "1", "row"],
    ),
    ("row number 0", {"rows": [{"row": 0, "sku": "A"}]}, "INVALID_ROW", ["rows", "0", "row"]),
    ("a threshold above 1", {"threshold": 1.5}, "INVALID_THRESHOLD", ["fuzzyThreshold"]),
    ("a threshold of 0", {"threshold": 0}, "INVALID_THRESHOLD", ["fuzzyThreshold"]),
    ("a malformed dataset id", {"datasetId": "x"}, "INVALID_ID", ["addToDatasetId"]),
    ("an unknown dataset", {"datasetId": "999999"}, "NOT_FOUND", ["addToDatasetId"]),
]


@pytest.mark.parametrize(
    ("variables", "code", "field"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
async def test_bad_input_is_rejected_with_its_field(
    variables: dict[str, Any],
    code: str,
    field: list[str],
    gql: GraphQLClient,
    owner: asyncpg.Connection,
) -> None:
    result = (await gql(MATCH, {"rows": [{"sku": "A"}], **variables}))["matchProducts"]
    assert result["__typename"] == "Rejected", result
    assert (result["code"], result["field"]) == (code, field)
    assert result["message"]
    assert await owner.fetchval("SELECT count(*) FROM match_inputs") == 0
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_another_tenants_dataset_is_not_found(
    gql: GraphQLClient, owner: asyncpg.Connection, other_tenant: Tenant
) -> None:
    theirs = await make_dataset(owner, other_tenant, "Theirs")
    result = await match(gql, [{"sku": "A"}], datasetId=str(theirs))
    assert (result["code"], result["field"]) == ("NOT_FOUND", ["addToDatasetId"])


async def test_rows_with_nothing_to_match_on_are_item_errors(
    gql: GraphQLClient, catalog: dict[str, int]
) -> None:
    rows = [
        {"row": 7, "brand": "Acme"},
        {"row": 8, "sku": "  ", "name": "", "identifiers": [{"kind": "MPN", "value": " "}]},
        {"row": 9, "sku": "OIL-1"},
        {"row": 10, "name": "x" * 1001},
    ]
    result = await match(gql, rows)
    assert (result["matched"], result["succeeded"], result["failed"]) == (4, 1, 3)
    assert [(e["row"], e["itemId"], e["code"]) for e in result["errors"]] == [
        (7, None, "NOTHING_TO_MATCH"),
        (8, None, "NOTHING_TO_MATCH"),
        (10, None, "VALUE_TOO_LONG"),
    ]
    assert [r["error"] is not None for r in result["rows"]] == [True, True, False, True]
    strict = await match(gql, rows, options={"errorPolicy": "ABORT"})
    assert (strict["succeeded"], strict["failed"], strict["rows"]) == (0, 3, [])


async def test_an_upload_that_is_not_a_file_is_rejected(gql: GraphQLClient) -> None:
    result = (await gql(MATCH, {"upload": "sku\nA\n"}))["matchProducts"]
    assert (result["code"], result["field"]) == ("UNSUPPORTED_FORMAT", ["upload"])


async def test_both_rows_and_an_upload_are_rejected(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await post_upload(
        http, tenant, b"sku\nA\n", "rows.csv", extra={"rows": [{"sku": "A"}]}
    )
    result = response.json()["data"]["matchProducts"]
    assert (result["code"], result["field"]) == ("INVALID_INPUT", ["rows"])


async def post_upload(
    http: httpx.AsyncClient,
    tenant: Tenant,
    content: bytes,
    filename: str,
    *,
    extra: dict[str, Any] | None = None,
) -> httpx.Response:
    """matchProducts with `content` as the uploaded file (GraphQL multipart request)."""
    operations = {"query": MATCH, "variables": {"upload": None, **(extra or {})}}
    return await http.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.upload"]}),
        },
        files={"0": (filename, content, "application/octet-stream")},
        headers={"Authorization": f"Bearer {tenant.token}", "Apollo-Require-Preflight": "true"},
    )


async def upload(
    http: httpx.AsyncClient, tenant: Tenant, content: bytes, filename: str, **extra: Any
) -> Any:
    response = await post_upload(http, tenant, content, filename, extra=extra)
    body = response.json()
    assert response.status_code == 200, body
    assert not body.get("errors"), body
    return body["data"]["matchProducts"]


UPLOAD_CSV = (
    "sku,name,brand,barcode,identifier:MPN,note\n"
    ",,,4006381333931,,first\n"
    ',,,,ZW-1,"with, comma"\n'
    "OIL-2,whatever,,,,\n"
    "\n"
    ",Dark chocolate 70%,ACME,,,\n"
    ',"broken,,,,\n'
    ",Olive Oil Extra Virgn 500ml,Nova,,,\n"
    ",Olive Oil,Nova,,,\n"
    ",,Nova,,,only a brand\n"
)


async def test_an_uploaded_csv_is_matched_in_the_background_and_downloads(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    tenant: Tenant,
    catalog: dict[str, int],
    settings: Settings,
) -> None:
    queued = await upload(http, tenant, UPLOAD_CSV.encode(), "rows.csv", options=BACKGROUND)
    assert queued["__typename"] == "JobQueued", queued
    assert queued["job"]["total"] == 8
    await run_worker(settings.model_copy(update={"batch_size": 4}))
    job = (await gql(RESULTS, {"id": queued["job"]["id"], "first": 100}))["job"]
    assert (job["status"], job["succeeded"], job["skipped"], job["failed"]) == ("PARTIAL", 5, 1, 2)
    nodes = [e["node"] for e in job["matchResults"]["edges"]]
    # Rows are numbered by the line they start on: the header is line 1.
    assert [(n["row"], *outcome(n)) for n in nodes] == [
        (2, "TEA-1", "BARCODE"),
        (3, "WATER-1", "IDENTIFIER"),
        (4, "OIL-2", "SKU"),
        (6, "CHOC-1", "NAME_BRAND"),
        (7, None, None),
        (8, "OIL-1", "FUZZY_NAME"),
        (9, None, None),
        (10, None, None),
    ]
    full = (await gql(JOB, {"id": queued["job"]["id"]}))["job"]
    assert [e["node"]["code"] for e in full["errors"]["edges"]] == [
        "MALFORMED_ROW",
        "NOTHING_TO_MATCH",
    ]

    auth = {"Authorization": f"Bearer {tenant.token}"}
    response = await http.get(f"/jobs/{queued['job']['id']}/match-results.csv", headers=auth)
    assert response.status_code == 200
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert list(table[0])[:7] == [
        "row",
        "sku",
        "name",
        "brand",
        "barcode",
        "identifier:MPN",
        "note",
    ]
    assert [r["row"] for r in table] == ["2", "3", "4", "6", "7", "8", "9", "10"]
    assert (table[1]["note"], table[1]["match_sku"], table[1]["match_by"]) == (
        "with, comma",
        "WATER-1",
        "IDENTIFIER",
    )
    assert (table[4]["match_status"], table[4]["sku"]) == ("INVALID", "")
    assert table[4]["match_error"].startswith("Row 7 ")
    assert [r["match_status"] for r in table] == [
        "MATCHED",
        "MATCHED",
        "MATCHED",
        "MATCHED",
        "INVALID",
        "MATCHED",
        "UNMATCHED",
        "INVALID",
    ]


async def test_a_small_jsonl_upload_is_matched_inline(
    http: httpx.AsyncClient, tenant: Tenant, catalog: dict[str, int]
) -> None:
    lines = [
        {"barcode": "4006381333931", "extra": 1},
        {"identifiers": {"mpn": "ZW-1"}},
        {"identifiers": [{"kind": "GTIN", "value": "0001234567895"}]},
        "not an object",
        {"name": "wild flower honey", "brand": None},
    ]
    content = "\n".join(json.dumps(line) for line in lines).encode()
    result = await upload(http, tenant, content, "rows.jsonl")
    assert result["__typename"] == "MatchProductsSummary", result
    assert [(r["row"], *outcome(r)) for r in result["rows"]] == [
        (1, "TEA-1", "BARCODE"),
        (2, "WATER-1", "IDENTIFIER"),
        (3, "CHOC-1", "BARCODE"),
        (4, None, None),
        (5, "HONEY-1", "NAME_BRAND"),
    ]
    assert [(e["row"], e["code"]) for e in result["errors"]] == [(4, "MALFORMED_ROW")]


async def test_more_rows_than_the_inline_limit_go_to_a_job_unless_inline(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    content = ("sku\n" + "".join(f"S-{i}\n" for i in range(1001))).encode()
    refused = await upload(http, tenant, content, "rows.csv", options={"mode": "INLINE"})
    assert (refused["code"], refused["field"]) == ("INLINE_LIMIT_EXCEEDED", ["options", "mode"])
    assert await owner.fetchval("SELECT count(*) FROM match_rows") == 0
    queued = await upload(http, tenant, content, "rows.csv")
    assert (queued["__typename"], queued["job"]["total"]) == ("JobQueued", 1001)


UPLOAD_REJECTIONS = [
    ("an empty file", b"", "rows.csv", "EMPTY_UPLOAD"),
    ("only a header", b"sku,name\n", "rows.csv", "EMPTY_UPLOAD"),
    ("no column to match on", b"price,color\n1,red\n", "rows.csv", "INVALID_HEADER"),
    ("a column twice", b"sku,sku\nA,B\n", "rows.csv", "INVALID_HEADER"),
    ("not CSV or JSONL", b"sku\nA\n", "rows.xlsx", "UNSUPPORTED_FORMAT"),
]


@pytest.mark.parametrize(
    ("content", "filename", "code"),
    [r[1:] for r in UPLOAD_REJECTIONS],
    ids=[r[0] for r in UPLOAD_REJECTIONS],
)
async def test_an_unusable_upload_is_rejected(
    content: bytes,
    filename: str,
    code: str,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
) -> None:
    result = await upload(http, tenant, content, filename)
    assert (result["code"], result["field"]) == (code, ["upload"]), result
    assert await owner.fetchval("SELECT count(*) FROM match_inputs") == 0


async def test_the_same_file_under_the_same_key_is_the_same_job(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    options = {"mode": "BACKGROUND", "idempotencyKey": "upload-1"}
    first = await upload(http, tenant, UPLOAD_CSV.encode(), "a.csv", options=options)
    again = await upload(http, tenant, UPLOAD_CSV.encode(), "b.csv", options=options)
    assert again["job"]["id"] == first["job"]["id"]
    other = await upload(http, tenant, b"sku\nX\n", "a.csv", options=options)
    assert other["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 1


async def test_staged_rows_go_after_the_retention_unless_a_job_still_shows_them(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: dict[str, int]
) -> None:
    await match(gql, MIXED)
    queued = await match(gql, MIXED, options=BACKGROUND)
    await owner.execute("UPDATE match_inputs SET created_at = now() - interval '8 days'")
    removed = await owner.fetchval("SELECT remove_expired_match_inputs(interval '7 days')")
    assert removed == 1
    # The job's rows stay with it (and go once the job itself is removed).
    assert await owner.fetchval("SELECT count(*) FROM match_rows") == len(MIXED)
    await owner.execute("DELETE FROM jobs WHERE id = $1", queued["job"]["id"])
    assert await owner.fetchval("SELECT remove_expired_match_inputs(interval '7 days')") == 1
    assert await owner.fetchval("SELECT count(*) FROM match_rows") == 0
