"""Chains (`options.then`): one mutation whose steps run one after another, each on the
outcome of the step before it, as jobs of their own linked by parent / next."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import asyncpg
import httpx

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.test_export_job import download
from tests.api.test_schedules import ARCHIVE_DRAFTS, act
from tests.api.test_schedules import create as create_schedule
from tests.support import (
    GraphQLClient,
    Runner,
    Tenant,
    make_dataset,
    make_products,
    run_worker,
)

JOB_FIELDS = """id operation status total succeeded failed skipped
  nextSteps { operation selectionFrom runOn arguments }"""
CHAIN = f"""
query($id: ID!) {{
  job(id: $id) {{
    {JOB_FIELDS}
    next {{
      {JOB_FIELDS} parent {{ id }}
      errors {{ edges {{ node {{ code message }} }} }}
      next {{ {JOB_FIELDS} parent {{ id }} resultFile {{ url rows format }} next {{ id }} }}
    }}
  }}
}}"""
MATCH_UPLOAD = """
mutation($upload: Upload!, $options: BulkOptions) {
  matchProducts(upload: $upload, options: $options) {
    __typename
    ... on JobQueued { job { id status total nextSteps { operation } } }
    ... on Rejected { code message field }
  }
}"""
SET_STATUS = """
mutation($selection: ProductSelection!, $status: ProductStatus!, $options: BulkOptions) {
  setProductStatus(selection: $selection, status: $status, options: $options) {
    __typename
    ... on SetProductStatusSummary { matched dryRun }
    ... on JobQueued { job { id status total } }
    ... on Rejected { code message field }
  }
}"""
CANCEL = """mutation($id: ID!) { cancelJob(id: $id) { __typename
  ... on Job { id status } ... on Rejected { code } } }"""
RETRY = """mutation($id: ID!) { retryJob(id: $id) { __typename
  ... on JobQueued { job { id total } } ... on Rejected { code message } } }"""

# (sku, barcode, name, brand)
CATALOG = [
    ("TEA-1", "4006381333931", "Green Tea", "Leaf"),
    ("TEA-2", "4006381333948", "Black Tea", "Leaf"),
    ("MUG-1", "5012345678900", "Blue Mug", "Clay"),
    ("MUG-2", None, "Red Mug", "Clay"),
    ("PEN-1", None, "Ink Pen", "Nib"),
]
# Matches TEA-1 by barcode, MUG-2 by SKU, TEA-2 by name and brand; the rest match nothing.
UPLOAD = (
    "barcode,sku,name,brand\n"
    "4006381333931,,,\n"
    ",MUG-2,,\n"
    ",,Black Tea,Leaf\n"
    "9999999999999,,,\n"
    ",NOPE-1,,\n"
)


async def add_catalog(owner: asyncpg.Connection, tenant: Tenant) -> dict[str, int]:
    ids: dict[str, int] = {}
    for sku, barcode, name, brand in CATALOG:
        ids[sku] = await owner.fetchval(
            """INSERT INTO products (tenant_id, sku, barcode, name, brand)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            tenant.id,
            sku,
            barcode,
            name,
            brand,
        )
    return ids


async def match_upload(
    http: httpx.AsyncClient, tenant: Tenant, content: str, options: dict[str, Any]
) -> dict[str, Any]:
    operations = {"query": MATCH_UPLOAD, "variables": {"upload": None, "options": options}}
    response = await http.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.upload"]}),
        },
        files={"0": ("rows.csv", content.encode(), "text/csv")},
        headers={"Authorization": f"Bearer {tenant.token}", "Apollo-Require-Preflight": "true"},
    )
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    answer: dict[str, Any] = body["data"]["matchProducts"]
    return answer


def add_step(dataset: int, **given: Any) -> dict[str, Any]:
    """A step adding to `dataset` the products the step before changed."""
    return {
        "operation": "addProductsToDataset",
        "arguments": {"datasetId": str(dataset)},
        "selectionFrom": "SUCCEEDED",
        **given,
    }


def by_ids(ids: list[int]) -> dict[str, Any]:
    return {"ids": [str(i) for i in ids]}


async def set_status(
    gql: GraphQLClient, selection: dict[str, Any], status: str, **options: Any
) -> dict[str, Any]:
    """setProductStatus with `options` (a chain in `then`); its answer."""
    answer: dict[str, Any] = (
        await gql(SET_STATUS, {"selection": selection, "status": status, "options": options})
    )["setProductStatus"]
    return answer


async def queued_chain(
    gql: GraphQLClient, selection: dict[str, Any], status: str, then: list[dict[str, Any]]
) -> str:
    """The first job of a chain starting with setProductStatus."""
    answer = await set_status(gql, selection, status, then=then)
    assert answer["__typename"] == "JobQueued", answer
    return str(answer["job"]["id"])


async def chain_of(gql: GraphQLClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = (await gql(CHAIN, {"id": job_id}))["job"]
    return job


async def jobs_count(owner: asyncpg.Connection) -> int:
    count: int = await owner.fetchval("SELECT count(*) FROM jobs")
    return count


async def dataset_products(owner: asyncpg.Connection, dataset_id: int) -> set[int]:
    rows = await owner.fetch(
        "SELECT product_id FROM dataset_products WHERE dataset_id = $1", dataset_id
    )
    return {r["product_id"] for r in rows}


async def test_match_then_add_the_matches_to_a_dataset_then_export_it(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await add_catalog(owner, tenant)
    dataset = await make_dataset(owner, tenant, "Matched")
    then = [
        {
            "operation": "addProductsToDataset",
            "arguments": {"datasetId": str(dataset)},
            "selectionFrom": "MATCHED",
        },
        {"operation": "exportProducts", "arguments": {"filter": {"datasetId": str(dataset)}}},
    ]
    # Five rows: a small request that would run inline, queued because a chain follows.
    queued = await match_upload(http, tenant, UPLOAD, {"then": then})
    assert queued["__typename"] == "JobQueued", queued
    first = queued["job"]
    assert [s["operation"] for s in first["nextSteps"]] == [
        "addProductsToDataset",
        "exportProducts",
    ]
    assert await dataset_products(owner, dataset) == set()

    await run_worker(settings.model_copy(update={"batch_size": 2}))

    match = await chain_of(gql, first["id"])
    assert (match["status"], match["succeeded"], match["skipped"]) == ("SUCCEEDED", 3, 2)
    add = match["next"]
    assert add["parent"] == {"id": match["id"]}
    assert (add["operation"], add["status"], add["total"], add["succeeded"]) == (
        "addProductsToDataset",
        "SUCCEEDED",
        3,
        3,
    )
    matched = {ids["TEA-1"], ids["MUG-2"], ids["TEA-2"]}
    assert await dataset_products(owner, dataset) == matched
    export = add["next"]
    assert export["parent"] == {"id": add["id"]}
    assert (export["operation"], export["status"], export["next"]) == (
        "exportProducts",
        "SUCCEEDED",
        None,
    )
    response = await download(http, export["resultFile"]["url"])
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
    assert sorted(r["sku"] for r in rows) == ["MUG-2", "TEA-1", "TEA-2"]
    assert export["resultFile"]["rows"] == 3


async def test_a_step_takes_the_products_the_step_before_changed(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    settings: Settings,
    storage: Storage,
) -> None:
    ids = await make_products(owner, storage, tenant, 6, status="ACTIVE", with_images=False)
    # Two are ARCHIVED already: setting them ARCHIVED again changes nothing (skipped).
    await owner.execute("UPDATE products SET status = 'ARCHIVED' WHERE id = ANY($1)", ids[:2])
    dataset = await make_dataset(owner, tenant, "Just archived")
    step = add_step(dataset)
    step["arguments"]["options"] = {"priority": "HIGH"}
    job_id = await queued_chain(gql, {"filter": {}}, "ARCHIVED", [step])
    await run_worker(settings.model_copy(update={"batch_size": 4}))

    chain = await chain_of(gql, job_id)
    assert (chain["status"], chain["succeeded"], chain["skipped"]) == ("SUCCEEDED", 4, 2)
    assert chain["next"]["status"] == "SUCCEEDED"
    assert chain["next"]["total"] == 4
    assert await dataset_products(owner, dataset) == set(ids[2:])


async def test_a_partial_step_stops_the_chain_unless_the_next_step_runs_on_partial(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    settings: Settings,
    storage: Storage,
) -> None:
    ids = await make_products(owner, storage, tenant, 4, status="ACTIVE", with_images=False)
    stops = await make_dataset(owner, tenant, "Stops")
    goes_on = await make_dataset(owner, tenant, "Goes on")
    queued = []
    for dataset, run_on, status in (
        (stops, "SUCCEEDED", "DRAFT"),
        (goes_on, "SUCCEEDED_OR_PARTIAL", "ARCHIVED"),
    ):
        queued.append(
            await queued_chain(gql, by_ids(ids), status, [add_step(dataset, runOn=run_on)])
        )
    # One product goes before the jobs run: each first step ends PARTIAL.
    await owner.execute("DELETE FROM products WHERE id = $1", ids[0])
    await run_worker(settings)

    stopped, went_on = [await chain_of(gql, job_id) for job_id in queued]
    assert (stopped["status"], stopped["failed"], stopped["next"]) == ("PARTIAL", 1, None)
    assert stopped["nextSteps"][0]["operation"] == "addProductsToDataset"
    assert await dataset_products(owner, stops) == set()
    assert (went_on["status"], went_on["next"]["status"]) == ("PARTIAL", "SUCCEEDED")
    assert await dataset_products(owner, goes_on) == set(ids[1:])


async def test_retrying_a_failed_step_goes_on_with_the_chain(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    settings: Settings,
    storage: Storage,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, status="ACTIVE", with_images=False)
    dataset = await make_dataset(owner, tenant, "After the retry")
    first = await queued_chain(gql, by_ids(ids), "ARCHIVED", [add_step(dataset)])
    row = await owner.fetchrow("DELETE FROM products WHERE id = $1 RETURNING *", ids[2])
    await run_worker(settings)
    assert (await chain_of(gql, first))["next"] is None
    # The product is back (same id): retrying the failed item ends the step SUCCEEDED,
    # and the chain goes on with every product the step changed, before and in the retry.
    await owner.execute(
        """INSERT INTO products (id, tenant_id, sku, name, status)
           OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, 'ACTIVE')""",
        row["id"],
        row["tenant_id"],
        row["sku"],
        row["name"],
    )
    retried = (await gql(RETRY, {"id": first}))["retryJob"]
    assert retried["__typename"] == "JobQueued", retried
    assert retried["job"]["total"] == 1
    await run_worker(settings)

    child = await chain_of(gql, retried["job"]["id"])
    assert (child["status"], child["next"]["status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert child["next"]["parent"] == {"id": child["id"]}
    assert await dataset_products(owner, dataset) == set(ids)


async def test_cancelling_a_step_stops_what_follows(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    settings: Settings,
    storage: Storage,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, status="ACTIVE", with_images=False)
    dataset = await make_dataset(owner, tenant, "Never")
    steps = [
        {
            "operation": "setProductStatus",
            "arguments": {"status": "DRAFT"},
            "selectionFrom": "SUCCEEDED",
        },
        add_step(dataset),
    ]
    queued = await queued_chain(gql, by_ids(ids), "ARCHIVED", steps)
    cancelled = (await gql(CANCEL, {"id": queued}))["cancelJob"]
    assert cancelled == {"__typename": "Job", "id": queued, "status": "CANCELLED"}
    await run_worker(settings)
    assert (await chain_of(gql, queued))["next"] is None
    assert await jobs_count(owner) == 1

    # Once a step has ended, cancelling it cancels the chain's step that has not.
    first = await queued_chain(gql, by_ids(ids), "ARCHIVED", steps)
    async with Runner(settings) as runner:
        assert await runner.slice(first, tenant) == "SUCCEEDED"
    second = (await chain_of(gql, first))["next"]
    assert second["status"] == "QUEUED"
    cancelled = (await gql(CANCEL, {"id": first}))["cancelJob"]
    assert cancelled == {"__typename": "Job", "id": second["id"], "status": "CANCELLED"}
    await run_worker(settings)
    chain = await chain_of(gql, first)
    assert (chain["next"]["status"], chain["next"]["next"]) == ("CANCELLED", None)
    assert await dataset_products(owner, dataset) == set()


async def test_a_step_that_cannot_start_fails_with_the_reason(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    settings: Settings,
    storage: Storage,
) -> None:
    ids = await make_products(owner, storage, tenant, 2, status="ACTIVE", with_images=False)
    dataset = await make_dataset(owner, tenant, "Gone")
    first = await queued_chain(gql, by_ids(ids), "DRAFT", [add_step(dataset)])
    await owner.execute("DELETE FROM datasets WHERE id = $1", dataset)
    await run_worker(settings)
    chain = await chain_of(gql, first)
    failed = chain["next"]
    assert (failed["operation"], failed["status"], failed["total"]) == (
        "addProductsToDataset",
        "FAILED",
        0,
    )
    errors = [e["node"] for e in failed["errors"]["edges"]]
    assert errors == [{"code": "NOT_FOUND", "message": f"Dataset {dataset} does not exist."}]


async def test_a_dry_run_checks_the_chain_and_queues_nothing(
    gql: GraphQLClient, owner: asyncpg.Connection, tenant: Tenant, storage: Storage
) -> None:
    ids = await make_products(owner, storage, tenant, 2, status="ACTIVE", with_images=False)
    dataset = await make_dataset(owner, tenant, "Dry")
    answer = await set_status(gql, by_ids(ids), "DRAFT", then=[add_step(dataset)], dryRun=True)
    assert answer == {
        "__typename": "SetProductStatusSummary",
        "matched": 2,
        "dryRun": True,
    }
    assert await jobs_count(owner) == 0


async def test_a_chain_that_does_not_fit_is_rejected_naming_the_field(
    gql: GraphQLClient, owner: asyncpg.Connection, tenant: Tenant, storage: Storage
) -> None:
    ids = await make_products(owner, storage, tenant, 2, status="ACTIVE", with_images=False)
    dataset = await make_dataset(owner, tenant, "Checked")
    from_before = add_step(dataset)
    add = {k: v for k, v in from_before.items() if k != "selectionFrom"}
    selection = by_ids(ids)
    cases: list[tuple[dict[str, Any], str, list[str]]] = [
        (
            {"then": [{"operation": "dropTables"}]},
            "UNKNOWN_OPERATION",
            ["options", "then", "0", "operation"],
        ),
        (
            {"then": [{"operation": "createDataset", "arguments": {"name": "x"}}]},
            "UNKNOWN_OPERATION",
            ["options", "then", "0", "operation"],
        ),
        (
            {"then": [{**add, "selectionFrom": "MATCHED"}]},
            "INVALID_CHAIN_SELECTION",
            ["options", "then", "0", "selectionFrom"],
        ),
        ({"then": [add]}, "MISSING_ARGUMENT", ["options", "then", "0", "arguments", "selection"]),
        (
            {
                "then": [
                    {
                        **from_before,
                        "arguments": {"datasetId": str(dataset), "selection": selection},
                    }
                ]
            },
            "INVALID_CHAIN_SELECTION",
            ["options", "then", "0", "arguments", "selection"],
        ),
        (
            {"then": [{**from_before, "arguments": {"datasetId": "999999"}}]},
            "NOT_FOUND",
            ["options", "then", "0", "arguments", "datasetId"],
        ),
        (
            {
                "then": [
                    {
                        **from_before,
                        "arguments": {
                            "datasetId": str(dataset),
                            "options": {"idempotencyKey": "k"},
                        },
                    }
                ]
            },
            "OPTION_SET_BY_CHAIN",
            ["options", "then", "0", "arguments", "options", "idempotencyKey"],
        ),
        (
            {
                "then": [
                    from_before,
                    {
                        "operation": "deleteImages",
                        "arguments": {"selection": {"products": selection}},
                    },
                    from_before,
                ]
            },
            "INVALID_CHAIN_SELECTION",
            ["options", "then", "2", "selectionFrom"],
        ),
        (
            {"then": [{"operation": "matchProducts", "arguments": {"rows": [{"sku": "A"}]}}]},
            "NOT_CHAINABLE",
            ["options", "then", "0", "arguments"],
        ),
        (
            {"then": [{"operation": "importProducts", "arguments": {}}]},
            "UPLOAD_NOT_CHAINABLE",
            ["options", "then", "0", "arguments", "upload"],
        ),
        ({"then": [from_before] * 11}, "TOO_MANY_STEPS", ["options", "then"]),
        ({"then": [from_before], "mode": "INLINE"}, "CHAIN_NEEDS_JOB", ["options", "mode"]),
    ]
    for options, code, field in cases:
        answer = await set_status(gql, selection, "DRAFT", **options)
        assert (answer["__typename"], answer["code"], answer["field"]) == (
            "Rejected",
            code,
            field,
        ), (
            options,
            answer,
        )
    assert await jobs_count(owner) == 0
    assert await owner.fetchval("SELECT count(*) FROM products WHERE status = 'DRAFT'") == 0


async def test_a_schedule_runs_a_chain(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    settings: Settings,
    storage: Storage,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, status="DRAFT", with_images=False)
    dataset = await make_dataset(owner, tenant, "Archived nightly")
    step = add_step(dataset)
    arguments = {**ARCHIVE_DRAFTS, "options": {"then": [step]}}
    made = await create_schedule(gql, arguments=arguments)
    assert (made["__typename"], made["matchedNow"]) == ("Schedule", 3), made
    wrong = await create_schedule(
        gql,
        arguments={**ARCHIVE_DRAFTS, "options": {"then": [{**step, "selectionFrom": "MATCHED"}]}},
    )
    assert (wrong["code"], wrong["field"]) == (
        "INVALID_CHAIN_SELECTION",
        ["input", "arguments", "options", "then", "0", "selectionFrom"],
    )
    run = await act(gql, "runScheduleNow", made["id"])
    await run_worker(settings)
    chain = await chain_of(gql, run["job"]["id"])
    assert (chain["status"], chain["next"]["operation"], chain["next"]["status"]) == (
        "SUCCEEDED",
        "addProductsToDataset",
        "SUCCEEDED",
    )
    assert await dataset_products(owner, dataset) == set(ids)
