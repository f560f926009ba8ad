"""GET /jobs/{id}/errors.csv: every failed item of a job, as `Job.errors` lists them, for
its tenant only."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import httpx

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import SET_STATUS
from tests.api.test_import_products import BACKGROUND, HEADER, import_file
from tests.support import GraphQLClient, Tenant, make_products, run_worker

ERRORS = """
query($id: ID!, $after: String) {
  job(id: $id) {
    status failed
    errors(first: 100, after: $after) {
      pageInfo { hasNextPage endCursor }
      edges { node { itemId row column code message } }
    }
  }
}"""
COLUMNS = ["item_id", "row", "column", "code", "message"]


def auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}"}


async def listed_errors(gql: GraphQLClient, job_id: str) -> list[dict[str, Any]]:
    """Every node of `job.errors`, page after page."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        errors = (await gql(ERRORS, {"id": job_id, "after": after}))["job"]["errors"]
        nodes += [edge["node"] for edge in errors["edges"]]
        if not errors["pageInfo"]["hasNextPage"]:
            return nodes
        after = errors["pageInfo"]["endCursor"]


async def download(http: httpx.AsyncClient, tenant: Tenant, job_id: str) -> list[list[str]]:
    """The CSV's records, header first."""
    response = await http.get(f"/jobs/{job_id}/errors.csv", headers=auth(tenant))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert f"job-{job_id}-errors.csv" in response.headers["content-disposition"]
    return list(csv.reader(io.StringIO(response.text, newline="")))


def as_records(nodes: list[dict[str, Any]]) -> list[list[str]]:
    """`job.errors` nodes as the CSV writes them: an empty cell for null."""
    return [
        ["" if n[k] is None else str(n[k]) for k in ("itemId", "row", "column", "code", "message")]
        for n in nodes
    ]


async def test_an_imports_failed_rows_download_as_the_job_lists_them(
    http: httpx.AsyncClient, gql: GraphQLClient, tenant: Tenant, settings: Settings
) -> None:
    good = [f"G-{i},Good {i},,Acme,,ACTIVE,1.00,,,\n" for i in range(120)]
    bad = [f'B-{i},"Name, with ""quotes""\nand a line break",,,,,-{i},,,\n' for i in range(1, 131)]
    content = (HEADER + "\n" + "".join(good + bad) + "B-0,Zero,,,,GONE,,,,\n").encode()
    queued = await import_file(http, tenant, content, options=BACKGROUND)
    job_id = queued["job"]["id"]
    await run_worker(settings)

    listed = await listed_errors(gql, job_id)
    assert len(listed) == 131
    records = await download(http, tenant, job_id)
    assert records[0] == COLUMNS
    assert records[1:] == as_records(listed)
    first = dict(zip(COLUMNS, records[1], strict=True))
    assert (first["row"], first["column"], first["code"]) == ("122", "price", "INVALID_PRICE")
    assert records[-1][1:4] == ["382", "status", "INVALID_STATUS"]


async def test_failed_items_carry_their_ids(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 12, with_images=False)
    result = await gql(
        SET_STATUS,
        {"selection": {"ids": [str(i) for i in ids]}, "status": "ARCHIVED", "options": BACKGROUND},
    )
    job_id = result["setProductStatus"]["job"]["id"]
    gone = ids[2:5]
    await owner.execute("DELETE FROM products WHERE id = ANY($1::bigint[])", gone)
    await run_worker(settings)

    records = await download(http, tenant, job_id)
    assert records[1:] == as_records(await listed_errors(gql, job_id))
    assert [(int(r[0]), r[1], r[2], r[3]) for r in records[1:]] == [
        (i, "", "", "NOT_FOUND") for i in gone
    ]


async def test_a_job_without_failures_downloads_the_header_alone(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    result = await gql(
        SET_STATUS,
        {"selection": {"ids": [str(i) for i in ids]}, "status": "ARCHIVED", "options": BACKGROUND},
    )
    job_id = result["setProductStatus"]["job"]["id"]
    await run_worker(settings)
    assert (await gql(ERRORS, {"id": job_id}))["job"]["status"] == "SUCCEEDED"
    response = await http.get(f"/jobs/{job_id}/errors.csv", headers=auth(tenant))
    assert response.status_code == 200
    assert response.text == "item_id,row,column,code,message\n"


async def test_another_tenants_job_or_no_token_gets_nothing(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    result = await gql(
        SET_STATUS,
        {"selection": {"ids": [str(i) for i in ids]}, "status": "ARCHIVED", "options": BACKGROUND},
    )
    job_id = result["setProductStatus"]["job"]["id"]
    await owner.execute("DELETE FROM products WHERE id = $1", ids[0])
    await run_worker(settings)

    foreign = await http.get(f"/jobs/{job_id}/errors.csv", headers=auth(other_tenant))
    assert foreign.status_code == 404
    assert foreign.json()["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": ["id"]}
    for unknown in ("00000000-0000-0000-0000-000000000000", "not-a-job"):
        missing = await http.get(f"/jobs/{unknown}/errors.csv", headers=auth(tenant))
        assert missing.status_code == 404
    anonymous = await http.get(f"/jobs/{job_id}/errors.csv")
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    wrong = await http.get(f"/jobs/{job_id}/errors.csv", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401
    # The owner still gets its one failed item.
    assert len(await download(http, tenant, job_id)) == 2
