"""The bulk mutations, inline and in the background, seen through the API."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import ADD_TO_DATASET, DELETE, JOB, REMOVE_FROM_DATASET, SET_STATUS
from tests.support import (
    GraphQLClient,
    Tenant,
    make_dataset,
    make_products,
    make_tenant,
    run_worker,
    stored_names,
)


async def catalog_state(owner: asyncpg.Connection, tenant: Tenant) -> dict[str, Any]:
    """What a user of the tenant could see, keyed by SKU so two tenants compare."""
    products = await owner.fetch(
        "SELECT sku, status FROM products WHERE tenant_id = $1 ORDER BY sku", tenant.id
    )
    memberships = await owner.fetch(
        """SELECT d.name, p.sku FROM dataset_products dp
           JOIN datasets d ON d.id = dp.dataset_id JOIN products p ON p.id = dp.product_id
           WHERE dp.tenant_id = $1 ORDER BY 1, 2""",
        tenant.id,
    )
    images = await owner.fetchval(
        "SELECT count(*) FROM product_images WHERE tenant_id = $1", tenant.id
    )
    return {
        "products": [tuple(r) for r in products],
        "memberships": [tuple(r) for r in memberships],
        "images": images,
    }


async def twin_catalogs(
    owner: asyncpg.Connection, storage: Storage, a: Tenant, b: Tenant, count: int
) -> tuple[list[int], list[int], int, int]:
    """The same catalog for two tenants: half Acme, half Zeta, a third in dataset Summer."""
    result = []
    for tenant in (a, b):
        dataset = await make_dataset(owner, tenant, "Summer")
        ids = await make_products(
            owner, storage, tenant, count // 2, brand="Acme", dataset_id=dataset
        )
        ids += await make_products(
            owner, storage, tenant, count - count // 2, brand="Zeta", sku_prefix="ZSKU"
        )
        result.append((ids, dataset))
    return result[0][0], result[1][0], result[0][1], result[1][1]


CASES = [
    ("deleteProducts", DELETE, {}),
    ("setProductStatus", SET_STATUS, {"status": "ARCHIVED"}),
    ("addProductsToDataset", ADD_TO_DATASET, {"datasetId": "DATASET"}),
    ("removeProductsFromDataset", REMOVE_FROM_DATASET, {"datasetId": "DATASET"}),
]


@pytest.mark.parametrize(("name", "document", "extra"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("by", ["ids", "filter"])
async def test_inline_and_background_end_in_the_same_state(
    name: str,
    document: str,
    extra: dict[str, Any],
    by: str,
    http: Any,
    owner: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
) -> None:
    a = await make_tenant(owner, "inline-co")
    b = await make_tenant(owner, "background-co")
    ids_a, ids_b, dataset_a, dataset_b = await twin_catalogs(owner, storage, a, b, 60)

    def variables(ids: list[int], dataset: int, mode: str) -> dict[str, Any]:
        if by == "ids":
            selection: dict[str, Any] = {"ids": [str(i) for i in ids[10:50]]}
        else:
            selection = {"filter": {"category": ["Category 1", "Category 2"]}}
        values = {k: (str(dataset) if v == "DATASET" else v) for k, v in extra.items()}
        return {"selection": selection, "options": {"mode": mode}, **values}

    inline = (await GraphQLClient(http, a.token)(document, variables(ids_a, dataset_a, "INLINE")))[
        name
    ]
    queued = (
        await GraphQLClient(http, b.token)(document, variables(ids_b, dataset_b, "BACKGROUND"))
    )[name]
    assert inline["__typename"].endswith("Summary")
    assert queued["__typename"] == "JobQueued"
    assert queued["job"]["status"] == "QUEUED"
    assert queued["job"]["total"] == inline["matched"]

    await run_worker(settings)

    job = (await GraphQLClient(http, b.token)(JOB, {"id": queued["job"]["id"]}))["job"]
    assert job["status"] == "SUCCEEDED"
    assert job["processed"] == inline["matched"]
    for key in ("succeeded", "failed", "skipped"):
        assert job[key] == inline[key], key
        assert job["result"][key] == inline[key], key
    if name == "deleteProducts":
        assert job["result"]["deletedImages"] == inline["deletedImages"]
        assert job["result"]["removedFromDatasets"] == inline["removedFromDatasets"]
    assert await catalog_state(owner, a) == await catalog_state(owner, b)
    # Something really changed (the comparison above is not between two untouched catalogs).
    assert inline["succeeded"] > 0


async def test_delete_removes_images_files_and_memberships(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    dataset = await make_dataset(owner, tenant, "Summer")
    ids = await make_products(owner, storage, tenant, 5, dataset_id=dataset)
    keep = await make_products(owner, storage, tenant, 2, sku_prefix="KEEP")
    result = (await gql(DELETE, {"selection": {"ids": [str(i) for i in ids]}}))["deleteProducts"]
    assert result["__typename"] == "DeleteProductsSummary"
    assert (
        result["matched"],
        result["succeeded"],
        result["deletedImages"],
        result["removedFromDatasets"],
    ) == (5, 5, 5, 5)
    assert await owner.fetchval("SELECT count(*) FROM products") == 2
    assert await owner.fetchval("SELECT count(*) FROM file_deletions") == 0
    files = await stored_names(storage, suffix=".svg")
    assert files == sorted(f"{i}.svg" for i in keep)


async def test_background_delete_removes_stored_files(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 30)
    queued = await gql(DELETE, {"selection": {"filter": {}}, "options": {"mode": "BACKGROUND"}})
    assert queued["deleteProducts"]["__typename"] == "JobQueued"
    assert len(await stored_names(storage, suffix=".svg")) == 30
    await run_worker(settings.model_copy(update={"batch_size": 7}))
    assert await stored_names(storage, suffix=".svg") == []
    assert await owner.fetchval("SELECT count(*) FROM products") == 0


async def test_auto_mode_runs_small_selections_inline_and_large_ones_as_jobs(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    threshold = (await gql("{ operations { name inlineThreshold inlineLimit } }"))["operations"]
    limits = {op["name"]: op for op in threshold}
    assert limits["setProductStatus"]["inlineThreshold"] == 1000
    await make_products(owner, storage, tenant, 1001, with_images=False)
    small = await gql(
        SET_STATUS, {"selection": {"filter": {"skuPrefix": "SKU-000000"}}, "status": "ACTIVE"}
    )
    assert small["setProductStatus"]["__typename"] == "SetProductStatusSummary"
    assert small["setProductStatus"]["succeeded"] == 9
    large = await gql(SET_STATUS, {"selection": {"filter": {}}, "status": "ACTIVE"})
    assert large["setProductStatus"]["__typename"] == "JobQueued"
    assert large["setProductStatus"]["job"]["total"] == 1001
    await run_worker(settings)
    job = (await gql(JOB, {"id": large["setProductStatus"]["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["skipped"]) == ("SUCCEEDED", 992, 9)


async def test_add_to_dataset_skips_and_counts_products_already_in_it(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    dataset = await make_dataset(owner, tenant, "Summer")
    inside = await make_products(owner, storage, tenant, 3, dataset_id=dataset)
    outside = await make_products(owner, storage, tenant, 4, sku_prefix="OUT")
    result = (
        await gql(
            ADD_TO_DATASET,
            {
                "datasetId": str(dataset),
                "selection": {"ids": [str(i) for i in inside + outside]},
            },
        )
    )["addProductsToDataset"]
    assert (result["matched"], result["succeeded"], result["skipped"]) == (7, 4, 3)
    count = (
        await gql("query($id: ID!) { dataset(id: $id) { productCount } }", {"id": str(dataset)})
    )["dataset"]["productCount"]
    assert count == 7


async def test_dry_run_changes_nothing_and_shows_a_sample(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    ids = await make_products(owner, storage, tenant, 1500, with_images=False)
    result = await gql(
        DELETE, {"selection": {"filter": {}}, "options": {"dryRun": True, "mode": "BACKGROUND"}}
    )
    summary = result["deleteProducts"]
    assert summary["__typename"] == "DeleteProductsSummary"
    assert summary["dryRun"] is True
    assert (summary["matched"], summary["succeeded"]) == (1500, 1500)
    assert [p["id"] for p in summary["sample"]] == [str(i) for i in ids[:10]]
    assert await owner.fetchval("SELECT count(*) FROM products") == 1500
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0
