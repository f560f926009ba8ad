"""enrichProducts and Product.description, seen through the API, against a fake
OpenAI-compatible provider (tests/fake_llm.py) served on a loopback port."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import SUMMARY_FIELDS
from tests.api.test_import_products import import_file
from tests.fake_llm import FakeLLM, answer_for
from tests.support import GraphQLClient, Tenant, make_products, run_worker

ENRICH = f"""
mutation($selection: ProductSelection!, $instructions: EnrichInstructions!,
         $maxTotalTokens: Int, $options: BulkOptions) {{
  enrichProducts(selection: $selection, instructions: $instructions,
                 maxTotalTokens: $maxTotalTokens, options: $options) {{
    {SUMMARY_FIELDS}
  }}
}}"""

UPDATE = """
mutation($selection: ProductSelection!, $patch: ProductPatch!) {
  updateProducts(selection: $selection, patch: $patch) {
    __typename ... on BulkSummary { succeeded } ... on Rejected { code field }
  }
}"""

PRODUCTS = """
query { products(first: 100) { edges { node { id sku description } } } }"""

JOB_USAGE = """
query($id: ID!) {
  job(id: $id) {
    status total processed succeeded failed skipped result
    usage { calls retries rateLimited tokensIn tokensOut waitedSeconds }
    errors(first: 100) { totalCount edges { node { itemId code message } } }
  }
}"""

API_KEY = "sk-test-123"
BACKGROUND = {"mode": "BACKGROUND"}


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        fake.api_key = API_KEY
        yield fake


@pytest.fixture
def llm_configured() -> bool:
    """Whether the API and the workers have a provider (a test parametrizes it to False)."""
    return True


@pytest.fixture
def settings(settings: Settings, llm: FakeLLM, llm_configured: bool) -> Settings:
    if not llm_configured:
        return settings
    return settings.model_copy(
        update={
            "llm_base_url": llm.base_url,
            "llm_api_key": SecretStr(API_KEY),
            "llm_requests_per_second": 200.0,
            "llm_concurrency": 4,
            "llm_timeout_seconds": 5.0,
            "llm_max_retries": 5,
        }
    )


def ids_of(ids: list[int]) -> dict[str, Any]:
    return {"ids": [str(i) for i in ids]}


def instructions(**fields: Any) -> dict[str, Any]:
    return {"prompt": "Write about {name}", "target": "description", **fields}


async def catalog_state(owner: asyncpg.Connection, tenant: Tenant) -> list[tuple[Any, ...]]:
    rows = await owner.fetch(
        """SELECT sku, name, description, attributes::text, updated_at
           FROM products WHERE tenant_id = $1 ORDER BY sku""",
        tenant.id,
    )
    return [tuple(r) for r in rows]


async def descriptions(owner: asyncpg.Connection, ids: list[int]) -> list[str | None]:
    rows = await owner.fetch(
        "SELECT description FROM products WHERE id = ANY($1::bigint[]) ORDER BY id", ids
    )
    return [r["description"] for r in rows]


# Refusals: nothing changes, nothing is queued, the provider is not called.


@pytest.mark.parametrize("llm_configured", [False])
async def test_without_a_provider_enrich_is_refused_naming_the_setting(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    before = await catalog_state(owner, tenant)
    for options in (None, BACKGROUND):
        result = (
            await gql(
                ENRICH,
                {"selection": ids_of(ids), "instructions": instructions(), "options": options},
            )
        )["enrichProducts"]
        assert result["__typename"] == "Rejected"
        assert result["code"] == "PROVIDER_NOT_CONFIGURED"
        assert "BULKOPS_LLM_BASE_URL" in result["message"]
    assert await catalog_state(owner, tenant) == before
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0
    assert llm.calls == []


@pytest.mark.parametrize(
    ("given", "budget", "code", "field", "says"),
    [
        ({"prompt": "   "}, None, "EMPTY_PROMPT", ["instructions", "prompt"], "empty"),
        (
            {"prompt": "Write about {price} of {name}"},
            None,
            "UNKNOWN_PLACEHOLDER",
            ["instructions", "prompt"],
            "{price}",
        ),
        (
            {"prompt": "About {attributes.}"},
            None,
            "UNKNOWN_PLACEHOLDER",
            ["instructions", "prompt"],
            "{attributes.}",
        ),
        (
            {"prompt": "A lone { brace"},
            None,
            "INVALID_TEMPLATE",
            ["instructions", "prompt"],
            "twice",
        ),
        (
            {"prompt": "Shout {name!r}"},
            None,
            "INVALID_TEMPLATE",
            ["instructions", "prompt"],
            "{name}",
        ),
        ({"target": "price"}, None, "INVALID_TARGET", ["instructions", "target"], "price"),
        ({"target": "attributes."}, None, "INVALID_TARGET", ["instructions", "target"], "key"),
        (
            {"maxOutputTokens": 0},
            None,
            "INVALID_MAX_OUTPUT_TOKENS",
            ["instructions", "maxOutputTokens"],
            "16384",
        ),
        (
            {"maxOutputTokens": 1_000_000},
            None,
            "INVALID_MAX_OUTPUT_TOKENS",
            ["instructions", "maxOutputTokens"],
            "16384",
        ),
        ({"model": "  "}, None, "INVALID_MODEL", ["instructions", "model"], "model"),
        ({}, 0, "INVALID_TOKEN_BUDGET", ["maxTotalTokens"], "more than 0"),
        ({}, -5, "INVALID_TOKEN_BUDGET", ["maxTotalTokens"], "more than 0"),
    ],
)
async def test_bad_instructions_are_refused_naming_the_field(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
    given: dict[str, Any],
    budget: int | None,
    code: str,
    field: list[str],
    says: str,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    before = await catalog_state(owner, tenant)
    for options in (None, BACKGROUND):
        result = (
            await gql(
                ENRICH,
                {
                    "selection": ids_of(ids),
                    "instructions": instructions(**given),
                    "maxTotalTokens": budget,
                    "options": options,
                },
            )
        )["enrichProducts"]
        assert result["__typename"] == "Rejected", result
        assert (result["code"], result["field"]) == (code, field)
        assert says in result["message"]
    assert await catalog_state(owner, tenant) == before
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0
    assert llm.calls == []


async def test_a_dry_run_calls_nothing_and_changes_nothing(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    await owner.execute("UPDATE products SET description = 'Kept' WHERE id = $1", ids[0])
    before = await catalog_state(owner, tenant)
    # Literal braces are written twice; every placeholder is known.
    prompt = 'Answer as JSON {{"text": ...}} for {sku} {brand} {category} {description}'
    result = (
        await gql(
            ENRICH,
            {
                "selection": ids_of(ids),
                "instructions": instructions(prompt=prompt, model="llama3.2"),
                "maxTotalTokens": 1000,
                "options": {"dryRun": True},
            },
        )
    )["enrichProducts"]
    assert result["__typename"] == "EnrichProductsSummary", result
    assert result["dryRun"] is True
    assert result["succeeded"] + result["skipped"] == 3
    assert await catalog_state(owner, tenant) == before
    assert llm.calls == []


# Product.description: read, patched, imported and exported.


async def test_the_description_is_read_patched_and_cleared(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    ids = await make_products(owner, storage, tenant, 2, with_images=False)
    patched = await gql(
        UPDATE,
        {"selection": ids_of(ids[:1]), "patch": {"description": "  Soft cotton.\nWash at 30.  "}},
    )
    assert patched["updateProducts"] == {"__typename": "UpdateProductsSummary", "succeeded": 1}
    product = await gql("query($id: ID!) { product(id: $id) { description } }", {"id": ids[0]})
    assert product["product"]["description"] == "Soft cotton.\nWash at 30."
    listed = (await gql(PRODUCTS))["products"]["edges"]
    assert [e["node"]["description"] for e in listed] == ["Soft cotton.\nWash at 30.", None]
    blank = await gql(UPDATE, {"selection": ids_of(ids[:1]), "patch": {"description": "  "}})
    assert blank["updateProducts"] == {
        "__typename": "Rejected",
        "code": "BLANK_VALUE",
        "field": ["patch", "description"],
    }
    cleared = await gql(UPDATE, {"selection": ids_of(ids[:1]), "patch": {"description": None}})
    assert cleared["updateProducts"]["succeeded"] == 1
    assert await descriptions(owner, ids) == [None, None]


async def test_descriptions_import_and_export_back(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    multiline = 'Line one, with "quotes".\nLine two \\ é 😀'
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sku", "name", "Description"])
    writer.writerow(["D-1", "One", multiline])
    writer.writerow(["D-2", "Two", ""])
    writer.writerow(["D-3", "Three", "x" * 100_001])
    result = await import_file(http, tenant, out.getvalue().encode())
    assert (result["created"], result["failed"]) == (2, 1), result
    assert [(e["row"], e["column"], e["code"]) for e in result["errors"]] == [
        (5, "description", "VALUE_TOO_LONG")  # rows are lines: D-1 takes two
    ]
    jsonl = json.dumps({"sku": "D-2", "description": "  From JSONL  "}) + "\n"
    result = await import_file(http, tenant, jsonl.encode(), filename="more.jsonl")
    assert result["updated"] == 1, result

    auth = {"Authorization": f"Bearer {tenant.token}"}
    response = await http.get("/export/products.csv", headers=auth)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
    assert [(r["sku"], r["description"]) for r in rows] == [
        ("D-1", multiline),
        ("D-2", "From JSONL"),
    ]
    response = await http.get("/export/products.jsonl", headers=auth)
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [(r["sku"], r["description"]) for r in lines] == [
        ("D-1", multiline),
        ("D-2", "From JSONL"),
    ]
    # The export is a file the import takes as it is.
    result = await import_file(http, other_tenant, response.content, filename="back.jsonl")
    assert (result["created"], result["failed"]) == (2, 0), result
    back = await owner.fetch(
        "SELECT sku, description FROM products WHERE tenant_id = $1 ORDER BY sku",
        other_tenant.id,
    )
    assert [tuple(r) for r in back] == [("D-1", multiline), ("D-2", "From JSONL")]


# End to end against the fake provider.


async def test_an_inline_enrich_writes_the_answers(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    result = (await gql(ENRICH, {"selection": ids_of(ids), "instructions": instructions()}))[
        "enrichProducts"
    ]
    assert result["__typename"] == "EnrichProductsSummary", result
    assert (result["succeeded"], result["failed"], result["skipped"]) == (3, 0, 0)
    assert await descriptions(owner, ids) == [
        answer_for(f"Write about Product {n}") for n in (1, 2, 3)
    ]
    assert {c.model for c in llm.calls} == {"gpt-4o-mini"}
    assert len(llm.keys_seen()) == 3


async def test_products_with_a_value_are_skipped_unless_overwrite(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    await owner.execute("UPDATE products SET description = 'Kept' WHERE id = $1", ids[1])
    variables = {"selection": ids_of(ids), "instructions": instructions(model="llama3.2")}
    result = (await gql(ENRICH, variables))["enrichProducts"]
    assert (result["succeeded"], result["skipped"]) == (2, 1), result
    assert await descriptions(owner, ids) == [
        answer_for("Write about Product 1"),
        "Kept",
        answer_for("Write about Product 3"),
    ]
    assert len(llm.calls) == 2
    assert {c.model for c in llm.calls} == {"llama3.2"}

    variables["instructions"] = instructions(prompt="New: {name}", overwrite=True)
    result = (await gql(ENRICH, variables))["enrichProducts"]
    assert (result["succeeded"], result["skipped"]) == (3, 0), result
    assert await descriptions(owner, ids) == [answer_for(f"New: Product {n}") for n in (1, 2, 3)]


async def test_an_attribute_takes_the_answer_and_the_others_stay(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    await owner.execute(
        """UPDATE products SET attributes = '{"color": "red", "size": 42}' WHERE id = ANY($1)""",
        ids,
    )
    await owner.execute(
        """UPDATE products SET attributes = attributes || '{"slogan": "Old"}' WHERE id = $1""",
        ids[2],
    )
    prompt = "Slogan for {name} by {brand}, {attributes.color}, size {attributes.size}"
    result = (
        await gql(
            ENRICH,
            {
                "selection": ids_of(ids),
                "instructions": instructions(prompt=prompt, target="attributes.slogan"),
            },
        )
    )["enrichProducts"]
    assert (result["succeeded"], result["skipped"]) == (2, 1), result
    rows = await owner.fetch(
        "SELECT attributes::text FROM products WHERE id = ANY($1) ORDER BY id", ids
    )
    slogans = [answer_for(f"Slogan for Product {n} by Acme, red, size 42") for n in (1, 2)]
    assert [json.loads(r[0]) for r in rows] == [
        *({"color": "red", "size": 42, "slogan": slogan} for slogan in slogans),
        {"color": "red", "size": 42, "slogan": "Old"},
    ]
    assert await descriptions(owner, ids) == [None, None, None]


async def test_a_job_within_the_provider_rate_limit_writes_every_product(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    llm: FakeLLM,
) -> None:
    # The provider takes fewer calls a second than bulkops is allowed to send: it answers
    # 429 past them, and the calls that get one are tried again.
    llm.rps = 30
    ids = await make_products(owner, storage, tenant, 100, with_images=False)
    queued = (
        await gql(
            ENRICH,
            {"selection": ids_of(ids), "instructions": instructions(), "options": BACKGROUND},
        )
    )["enrichProducts"]
    assert queued["__typename"] == "JobQueued", queued
    await run_worker(settings.model_copy(update={"llm_requests_per_second": 50.0}))
    job = (await gql(JOB_USAGE, {"id": queued["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("SUCCEEDED", 100, 0), job
    assert await descriptions(owner, ids) == [
        answer_for(f"Write about Product {n}") for n in range(1, 101)
    ]
    assert job["usage"]["calls"] >= 100
    assert job["usage"]["tokensIn"] > 0 and job["usage"]["tokensOut"] > 0
    # One key per product, the same on every attempt.
    assert len(llm.keys_seen()) == 100
    assert llm.busiest_window() <= 30


@pytest.mark.parametrize("garbage", ["not_json", "no_choices", "empty_content"])
async def test_garbage_answers_are_item_errors(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    llm: FakeLLM,
    garbage: Any,
) -> None:
    ids = await make_products(owner, storage, tenant, 6, with_images=False)
    await owner.execute("UPDATE products SET name = 'BROKEN ' || id WHERE id = ANY($1)", ids[::2])
    llm.garbage, llm.garbage_marker = garbage, "BROKEN"
    queued = (
        await gql(
            ENRICH,
            {"selection": ids_of(ids), "instructions": instructions(), "options": BACKGROUND},
        )
    )["enrichProducts"]
    await run_worker(settings)
    job = (await gql(JOB_USAGE, {"id": queued["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("PARTIAL", 3, 3), job
    errors = [e["node"] for e in job["errors"]["edges"]]
    assert sorted(int(e["itemId"]) for e in errors) == ids[::2]
    assert {e["code"] for e in errors} == {"PROVIDER_BAD_ANSWER"}
    written = await descriptions(owner, ids)
    assert written[::2] == [None, None, None]
    assert all(d is not None for d in written[1::2])


async def test_a_token_budget_stops_the_job_and_skips_the_rest(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    llm: FakeLLM,
) -> None:
    llm.usage = (10, 10)
    ids = await make_products(owner, storage, tenant, 40, with_images=False)
    queued = (
        await gql(
            ENRICH,
            {
                "selection": ids_of(ids),
                "instructions": instructions(),
                "maxTotalTokens": 100,
                "options": BACKGROUND,
            },
        )
    )["enrichProducts"]
    concurrency = 2
    await run_worker(settings.model_copy(update={"llm_concurrency": concurrency}))
    job = (await gql(JOB_USAGE, {"id": queued["job"]["id"]}))["job"]
    assert job["status"] in ("SUCCEEDED", "PARTIAL"), job
    # Five answers use the budget; calls already in flight then may still land.
    assert 5 <= job["succeeded"] <= 5 + concurrency, job
    assert job["skipped"] == 40 - job["succeeded"] - job["failed"]
    assert "token budget of 100 reached" in json.dumps(job)
    assert job["usage"]["tokensIn"] + job["usage"]["tokensOut"] >= 100
    written = [d for d in await descriptions(owner, ids) if d is not None]
    assert len(written) == job["succeeded"]
    assert len(llm.answered) == job["succeeded"]
