"""exportProducts: the selection written to a stored file, inline or by a job, downloaded
through a signed link that expires; every row exactly once, for the owning tenant only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from bulkops.db import export as export_db
from bulkops.db.pool import tenant_transaction
from bulkops.operations import get_operation
from bulkops.operations.base import BatchContext
from bulkops.services import export_files
from bulkops.services.files import purge_deleted_files
from bulkops.services.signing import signature, signing_key
from bulkops.storage import Storage
from bulkops.tasks.housekeeping import remove_expired
from tests.api.test_export import (
    TRICKY_NAME,
    as_csv_expects,
    database_rows,
    make_tricky_catalog,
    parse_csv,
    parse_jsonl,
)
from tests.support import (
    GraphQLClient,
    Runner,
    Tenant,
    make_dataset,
    make_products,
    run_worker,
    stored_names,
)

RESULT_FILE = "resultFile { url expiresAt rows bytes format }"
EXPORT = f"""
mutation($filter: ProductFilter, $format: ExportFormat, $options: BulkOptions) {{
  exportProducts(filter: $filter, format: $format, options: $options) {{
    __typename
    ... on ExportProductsSummary {{ matched succeeded skipped dryRun sample {{ id }}
                                    {RESULT_FILE} }}
    ... on JobQueued {{ job {{ id status total }} }}
    ... on Rejected {{ code message field }}
  }}
}}"""
JOB_FILE = f"""
query($id: ID!) {{
  job(id: $id) {{ id operation status total processed succeeded {RESULT_FILE} }}
}}"""
CANCEL = "mutation($id: ID!) { cancelJob(id: $id) { __typename } }"


async def export(gql: GraphQLClient, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await gql(EXPORT, variables))["exportProducts"]
    return result


async def queue_export(gql: GraphQLClient, **variables: Any) -> str:
    options = {"mode": "BACKGROUND", **variables.pop("options", {})}
    result = await export(gql, options=options, **variables)
    assert result["__typename"] == "JobQueued", result
    return str(result["job"]["id"])


def local(url: str) -> str:
    """The link's path and query, to ask the test server for it."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def download(http: httpx.AsyncClient, url: str) -> httpx.Response:
    # No bearer token: the signed link is the permission.
    return await http.get(local(url))


def csv_rows_of(response: httpx.Response, file: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a downloaded CSV file, once its size is the one the job recorded."""
    assert len(response.content) == file["bytes"]
    _, rows = parse_csv(response.content.decode("utf-8"))
    return rows


async def catalog_rows(owner: asyncpg.Connection, tenant: Tenant, prefix: str) -> list[Any]:
    """The tenant's products whose SKU starts with `prefix`, as the CSV export gives them."""
    return [
        as_csv_expects(r) for r in await database_rows(owner, tenant) if r["sku"].startswith(prefix)
    ]


async def test_a_background_export_writes_every_selected_row_once_to_a_signed_file(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_tricky_catalog(owner, storage, tenant)
    await make_products(owner, storage, tenant, 3000, sku_prefix="BULK", with_images=False)
    await make_products(owner, storage, tenant, 40, sku_prefix="LEFT", with_images=False)
    job_id = await queue_export(gql, filter={"skuPrefix": "BULK"})
    assert (await gql(JOB_FILE, {"id": job_id}))["job"]["resultFile"] is None

    # Several batches and slices, each appending to the file.
    await run_worker(settings.model_copy(update={"batch_size": 700, "slice_seconds": 0.0}))

    job = (await gql(JOB_FILE, {"id": job_id}))["job"]
    assert (job["operation"], job["status"], job["total"], job["succeeded"]) == (
        "exportProducts",
        "SUCCEEDED",
        3000,
        3000,
    )
    file = job["resultFile"]
    assert file["format"] == "CSV"
    assert file["rows"] == 3000
    expires = datetime.fromisoformat(file["expiresAt"])
    assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=24)
    response = await download(http, file["url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="products-')
    assert disposition.endswith('.csv"')
    assert csv_rows_of(response, file) == await catalog_rows(owner, tenant, "BULK")


async def test_an_export_between_products_it_leaves_out_has_exactly_the_selected_ones(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = await make_products(owner, storage, tenant, 1500, sku_prefix="PICK", with_images=False)
    # Between the selected products, others the filter leaves out: one in seven of the first
    # 700, then a run of 300 (more than a batch copies as a range less the ones left out),
    # then none.
    left_out = ids[:700:7] + ids[700:1000]
    await owner.execute(
        "UPDATE products SET sku = 'LEFT' || sku WHERE id = ANY($1::bigint[])", left_out
    )
    monkeypatch.setattr(export_db, "MAX_GAPS", 100)
    job_id = await queue_export(gql, filter={"skuPrefix": "PICK"})

    await run_worker(settings.model_copy(update={"batch_size": 250, "slice_seconds": 0.0}))

    job = (await gql(JOB_FILE, {"id": job_id}))["job"]
    assert (job["status"], job["total"], job["succeeded"]) == ("SUCCEEDED", 1100, 1100)
    file = job["resultFile"]
    response = await download(http, file["url"])
    assert csv_rows_of(response, file) == await catalog_rows(owner, tenant, "PICK")


async def test_a_small_export_runs_inline_with_the_same_file(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
) -> None:
    await make_tricky_catalog(owner, storage, tenant)
    await make_products(owner, storage, other_tenant, 3, sku_prefix="THEIRS", with_images=False)

    result = await export(gql, format="JSONL")

    assert result["__typename"] == "ExportProductsSummary"
    assert (result["matched"], result["succeeded"], result["dryRun"]) == (12, 12, False)
    file = result["resultFile"]
    assert (file["format"], file["rows"]) == ("JSONL", 12)
    response = await download(http, file["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].endswith('.jsonl"')
    assert len(response.content) == file["bytes"]
    rows = parse_jsonl(response.content.decode("utf-8"))
    assert rows == await database_rows(owner, tenant)
    assert rows[0]["name"] == TRICKY_NAME

    # The same export as a job writes the same file.
    job_id = await queue_export(gql, format="JSONL")
    await run_worker(settings)
    from_job = (await gql(JOB_FILE, {"id": job_id}))["job"]["resultFile"]
    assert (await download(http, from_job["url"])).content == response.content


async def test_a_dry_run_counts_and_samples_and_writes_no_file(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    ids = await make_products(owner, storage, tenant, 15, status="ACTIVE", with_images=False)
    await make_products(owner, storage, tenant, 5, sku_prefix="D", with_images=False)

    result = await export(gql, filter={"status": ["ACTIVE"]}, options={"dryRun": True})

    assert result["__typename"] == "ExportProductsSummary"
    assert (result["matched"], result["dryRun"], result["resultFile"]) == (15, True, None)
    assert [int(p["id"]) for p in result["sample"]] == ids[:10]
    assert await owner.fetchval("SELECT count(*) FROM export_files") == 0
    assert await storage.keys("exports/") == []


async def test_bad_filters_are_refused_naming_the_field(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    theirs = await make_dataset(owner, other_tenant, "Theirs")
    cases = [
        ({"datasetId": str(theirs)}, "NOT_FOUND", ["filter", "datasetId"]),
        ({"datasetId": "abc"}, "INVALID_ID", ["filter", "datasetId"]),
    ]
    for flt, code, field in cases:
        for mode in ("AUTO", "BACKGROUND"):
            result = await export(gql, filter=flt, options={"mode": mode})
            assert result["__typename"] == "Rejected", result
            assert (result["code"], result["field"]) == (code, field)
    unknown = await gql.post(EXPORT, {"filter": {"status": ["GONE"]}})
    assert unknown.json()["errors"]
    bad_format = await gql.post(EXPORT, {"format": "XML"})
    assert bad_format.json()["errors"]
    assert await owner.fetchval("SELECT count(*) FROM export_files") == 0
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_links_are_refused_when_tampered_with_expired_or_removed(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    file = (await export(gql))["resultFile"]
    parts = urlsplit(file["url"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (await http.get(local(file["url"]))).status_code == 200

    def link(path: str, expires: int | str, sig: str) -> str:
        return f"{path}?expires={expires}&signature={sig}"

    flipped = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    tampered = [
        link(parts.path, query["expires"], flipped),
        # A later expiry under the old signature.
        link(parts.path, int(query["expires"]) + 3600, query["signature"]),
        # Another tenant's path under our signature.
        link(parts.path.replace(tenant.id, other_tenant.id), query["expires"], query["signature"]),
        f"{parts.path}?expires={query['expires']}",
        parts.path,
    ]
    for url in tampered:
        response = await http.get(url)
        assert response.status_code == 403, url
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    # A link the service signed, whose time has passed.
    past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    key = signing_key(settings)
    expired = link(
        parts.path, past, signature(key, path=parts.path, tenant_id=tenant.id, expires=past)
    )
    response = await http.get(expired)
    assert response.status_code == 410
    assert response.json()["errors"][0]["extensions"]["code"] == "LINK_EXPIRED"

    # A valid link to a file that is gone.
    file_id = parts.path.rsplit("/", 1)[1].split(".")[0]
    await storage.delete_parted([export_files.storage_key(tenant.id, file_id, "csv")])
    assert (await http.get(local(file["url"]))).status_code == 404


async def test_another_tenant_cannot_see_the_job_or_its_file(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 20, with_images=False)
    job_id = await queue_export(gql)
    await run_worker(settings)
    theirs = GraphQLClient(http, other_tenant.token)

    assert (await theirs(JOB_FILE, {"id": job_id}))["job"] is None
    jobs = await theirs("{ jobs { totalCount edges { node { id } } } }")
    assert jobs["jobs"]["totalCount"] == 0
    # A link for our file signed as if for them does not open it.
    file = (await gql(JOB_FILE, {"id": job_id}))["job"]["resultFile"]
    path = urlsplit(file["url"]).path.replace(tenant.id, other_tenant.id)
    expires = int(datetime.fromisoformat(file["expiresAt"]).timestamp())
    sig = signature(signing_key(settings), path=path, tenant_id=other_tenant.id, expires=expires)
    assert (await http.get(f"{path}?expires={expires}&signature={sig}")).status_code == 404


async def test_a_batch_appended_but_not_committed_is_not_in_the_file_twice(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_tricky_catalog(owner, storage, tenant)
    await make_products(owner, storage, tenant, 38, sku_prefix="MORE", with_images=False)
    job_id = await queue_export(gql, format="JSONL")
    short = settings.model_copy(update={"batch_size": 10, "slice_seconds": 0.0})
    async with Runner(short) as runner:
        for _ in range(4):
            assert await runner.slice(job_id, tenant) == "SLICED"
        # A worker appends the last batch to the file and dies before its commit.
        op = get_operation("exportProducts")
        params = op.parse_params(await job_params(owner, job_id))
        cursor = await owner.fetchval("SELECT cursor FROM jobs WHERE id = $1", job_id)
        ids = [
            r["id"]
            for r in await owner.fetch(
                "SELECT id FROM products WHERE id > $1 ORDER BY id LIMIT 10", cursor
            )
        ]
        try:
            async with tenant_transaction(runner.pool, tenant.id) as conn:
                batch = BatchContext(conn=conn, storage=runner.deps.storage, tenant_id=tenant.id)
                await op.apply_batch(batch, params, ids)
                raise _Died
        except _Died:
            pass
        key = export_files.storage_key(tenant.id, params.file_id, "jsonl")
        recorded = await owner.fetchval("SELECT bytes FROM export_files")
        # The lost batch's part is stored, past the size the row records.
        assert f"{recorded:016d}" in await stored_names(storage, f"{key}/")
        # The batch re-runs with a product fewer, writing less than the lost append did.
        await owner.execute("DELETE FROM products WHERE id = $1", ids[3])
    await run_worker(short)

    job = (await gql(JOB_FILE, {"id": job_id}))["job"]
    assert (job["status"], job["succeeded"]) == ("SUCCEEDED", 49)
    file = job["resultFile"]
    assert file["rows"] == 49
    response = await download(http, file["url"])
    assert len(response.content) == file["bytes"]
    assert parse_jsonl(response.content.decode("utf-8")) == await database_rows(owner, tenant)


class _Died(Exception):
    pass


async def job_params(owner: asyncpg.Connection, job_id: str) -> dict[str, Any]:
    params: dict[str, Any] = json.loads(
        await owner.fetchval("SELECT params::text FROM jobs WHERE id = $1", job_id)
    )
    return params


async def test_retention_removes_files_whose_links_expired(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 30, with_images=False)
    done = await queue_export(gql)
    kept = await queue_export(gql, format="JSONL")
    cancelled = await queue_export(gql)
    assert (await gql(CANCEL, {"id": cancelled}))["cancelJob"]["__typename"] == "Job"
    inline = (await export(gql))["resultFile"]
    await run_worker(settings)
    old = (await gql(JOB_FILE, {"id": done}))["job"]["resultFile"]
    assert len(await export_names(storage, tenant)) == 4

    # The first job's link and the inline file's expire; the other file is fresh.
    await owner.execute(
        """UPDATE export_files SET expires_at = now() - interval '1 minute'
           WHERE id::text IN (SELECT params->>'file_id' FROM jobs WHERE id = $1)
              OR storage_key LIKE '%' || $2""",
        done,
        urlsplit(inline["url"]).path.rsplit("/", 1)[1],
    )
    async with Runner(settings) as runner:
        await remove_expired(runner.deps)
        assert await purge_deleted_files(runner.pool, storage, tenant.id) == 3

    assert (await gql(JOB_FILE, {"id": done}))["job"]["resultFile"] is None
    assert (await download(http, old["url"])).status_code == 404
    assert (await download(http, inline["url"])).status_code == 404
    fresh = (await gql(JOB_FILE, {"id": kept}))["job"]["resultFile"]
    assert (await download(http, fresh["url"])).status_code == 200
    assert [n.rsplit(".", 1)[1] for n in await export_names(storage, tenant)] == ["jsonl"]


async def test_operations_lists_export_products(gql: GraphQLClient) -> None:
    operations = (await gql("{ operations { name inlineThreshold batchSize } }"))["operations"]
    assert {"name": "exportProducts", "inlineThreshold": 10_000, "batchSize": 10_000} in (
        operations
    )


async def test_an_idempotency_key_replays_the_first_export(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    await make_products(owner, storage, tenant, 8, with_images=False)
    first_job = await queue_export(gql, options={"idempotencyKey": "export-1"})
    assert await queue_export(gql, options={"idempotencyKey": "export-1"}) == first_job
    inline = await export(gql, format="JSONL", options={"idempotencyKey": "export-2"})
    again = await export(gql, format="JSONL", options={"idempotencyKey": "export-2"})
    assert again == inline
    other = await export(gql, options={"idempotencyKey": "export-2"})
    assert (other["__typename"], other["code"]) == ("Rejected", "IDEMPOTENCY_KEY_REUSED")
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 1
    assert await owner.fetchval("SELECT count(*) FROM export_files") == 2


async def test_an_export_job_is_not_retried_and_its_file_stays_as_it_is(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 25, with_images=False)
    job_id = await queue_export(gql)
    await run_worker(settings)
    file = (await gql(JOB_FILE, {"id": job_id}))["job"]["resultFile"]
    retried = await gql(
        """mutation($id: ID!) { retryJob(id: $id, scope: ALL) {
             __typename ... on Rejected { code field } } }""",
        {"id": job_id},
    )
    assert retried["retryJob"] == {
        "__typename": "Rejected",
        "code": "NOT_RETRYABLE",
        "field": ["id"],
    }
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 1
    assert (await gql(JOB_FILE, {"id": job_id}))["job"]["resultFile"] == file
    async with Runner(settings) as runner:
        await remove_expired(runner.deps)
    response = await download(http, file["url"])
    assert response.status_code == 200
    assert len(response.content) == file["bytes"]
    assert len(parse_csv(response.text)[1]) == 25


async def export_names(storage: Storage, tenant: Tenant) -> set[str]:
    """The names of the tenant's stored export files (each stored in parts)."""
    return {key.split("/")[2] for key in await storage.keys(f"exports/{tenant.id}/")}
