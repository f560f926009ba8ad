"""retryJob on a matchProducts job: the child matches the same rows again, against the
catalog as it is now, with results of its own; the parent's results stay as they were."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import httpx

from bulkops.config import Settings
from tests.api.test_match_products import (
    CATALOG,
    FOREIGN,
    MIXED,
    RESULTS,
    add_catalog,
    background_job,
    outcome,
)
from tests.support import GraphQLClient, Tenant, run_worker

RETRY = """
mutation($id: ID!, $scope: RetryScope!) {
  retryJob(id: $id, scope: $scope) {
    __typename
    ... on JobQueued { job { id status total operation parent { id } } }
    ... on Rejected { code message field }
  }
}"""


async def results(gql: GraphQLClient, job_id: str) -> list[tuple[Any, ...]]:
    job = (await gql(RESULTS, {"id": job_id, "first": 100}))["job"]
    return [
        (n["row"], *outcome(n), [c["sku"] for c in n["candidates"]], n["error"] is not None)
        for n in (e["node"] for e in job["matchResults"]["edges"])
    ]


async def download(http: httpx.AsyncClient, tenant: Tenant, job_id: str) -> list[dict[str, str]]:
    response = await http.get(
        f"/jobs/{job_id}/match-results.csv", headers={"Authorization": f"Bearer {tenant.token}"}
    )
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


async def retry(gql: GraphQLClient, job_id: str, scope: str) -> dict[str, Any]:
    result: dict[str, Any] = (await gql(RETRY, {"id": job_id, "scope": scope}))["retryJob"]
    return result


async def test_retrying_all_rows_keeps_the_parents_results(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
) -> None:
    await add_catalog(owner, other_tenant, FOREIGN)
    await add_catalog(owner, tenant, CATALOG)
    parent = await background_job(gql, settings, MIXED)
    before = await results(gql, parent)
    parent_csv = await download(http, tenant, parent)
    assert [r for r, *_ in before] == [r["row"] for r in MIXED]
    assert before[5][:3] == (34, None, None)
    # The catalog changes: row 34 ("Olive Oil", Nova) now names a product exactly.
    await add_catalog(owner, tenant, [("OIL-4", None, "Olive Oil", "Nova", {})])

    queued = await retry(gql, parent, "ALL")
    assert queued["__typename"] == "JobQueued", queued
    child = queued["job"]
    assert (child["operation"], child["total"], child["parent"]) == (
        "matchProducts",
        len(MIXED),
        {"id": parent},
    )
    await run_worker(settings.model_copy(update={"batch_size": 4}))

    after = await results(gql, child["id"])
    assert [r for r, *_ in after] == [r["row"] for r in MIXED]
    assert after[5][:3] == (34, "OIL-4", "NAME_BRAND")
    assert after[:5] == before[:5] and after[6:] == before[6:]
    # The parent shows what it found when it ran, in the connection and the download.
    assert await results(gql, parent) == before
    assert await download(http, tenant, parent) == parent_csv
    child_csv = await download(http, tenant, child["id"])
    assert [r["match_sku"] for r in child_csv][5] == "OIL-4"
    job = (await gql(RESULTS, {"id": child["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["failed"], job["skipped"]) == ("PARTIAL", 6, 1, 2)
    assert job["result"]["matchedByNameBrand"] == 2


async def test_retrying_failed_rows_matches_those_rows_alone(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await add_catalog(owner, tenant, CATALOG)
    parent = await background_job(gql, settings, MIXED)
    before = await results(gql, parent)

    queued = await retry(gql, parent, "FAILED_ITEMS")
    assert queued["__typename"] == "JobQueued", queued
    assert queued["job"]["total"] == 1
    await run_worker(settings)
    child = queued["job"]["id"]
    # Row 55 has nothing to match on: it fails again, and is the child's only row.
    assert await results(gql, child) == [(55, None, None, [], True)]
    job = (await gql(RESULTS, {"id": child}))["job"]
    assert (job["status"], job["failed"]) == ("PARTIAL", 1)
    assert await results(gql, parent) == before
    # A job without failed rows has nothing to retry.
    clean = await background_job(gql, settings, [r for r in MIXED if r["row"] != 55])
    refused = await retry(gql, clean, "FAILED_ITEMS")
    assert (refused["__typename"], refused["code"], refused["field"]) == (
        "Rejected",
        "NOTHING_TO_RETRY",
        ["scope"],
    )
