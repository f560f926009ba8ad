"""deleteImages, inline and in the background, seen through the API."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import JOB, SUMMARY_FIELDS
from tests.support import (
    GraphQLClient,
    Tenant,
    make_dataset,
    make_products,
    make_tenant,
    run_worker,
    stored_names,
)

DELETE_IMAGES = f"""
mutation($selection: ImageSelection!, $options: BulkOptions) {{
  deleteImages(selection: $selection, options: $options) {{
    {SUMMARY_FIELDS}
    ... on DeleteImagesSummary {{ deletedFiles missingFiles }}
  }}
}}"""

IMAGES = """
query($id: ID!) { product(id: $id) { images { id url } } }"""

BACKGROUND = {"mode": "BACKGROUND"}
SVG = b"<svg xmlns='http://www.w3.org/2000/svg'/>"


def ids_of(ids: list[int]) -> list[str]:
    return [str(i) for i in ids]


async def add_images(
    owner: asyncpg.Connection, storage: Storage, tenant: Tenant, product_ids: list[int]
) -> list[int]:
    """A second image (and its file) for each of the products; the new image ids."""
    keys = [f"{tenant.id}/images/{i}-back.svg" for i in product_ids]
    rows = await owner.fetch(
        """INSERT INTO product_images (tenant_id, product_id, storage_key, position)
           SELECT $1, unnest($2::bigint[]), unnest($3::text[]), 1 RETURNING id""",
        tenant.id,
        product_ids,
        keys,
    )
    await storage.write_many(dict.fromkeys(keys, SVG))
    return sorted(r["id"] for r in rows)


async def image_ids(owner: asyncpg.Connection, tenant: Tenant) -> list[int]:
    rows = await owner.fetch(
        "SELECT id FROM product_images WHERE tenant_id = $1 ORDER BY id", tenant.id
    )
    return [r["id"] for r in rows]


async def catalog_state(
    owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> dict[str, Any]:
    """The tenant's images and stored files, keyed by SKU so two tenants compare."""
    images = await owner.fetch(
        """SELECT p.sku, m.position FROM product_images m
           JOIN products p ON p.id = m.product_id WHERE m.tenant_id = $1 ORDER BY 1, 2""",
        tenant.id,
    )
    skus = dict(await owner.fetch("SELECT id, sku FROM products WHERE tenant_id = $1", tenant.id))
    files = []
    for name in await stored_names(storage, f"{tenant.id}/images/", suffix=".svg"):
        product_id, _, side = name.removesuffix(".svg").partition("-")
        files.append((skus[int(product_id)], side))
    return {"images": [tuple(r) for r in images], "files": sorted(files), "products": len(skus)}


async def twin_catalog(owner: asyncpg.Connection, storage: Storage, tenant: Tenant) -> int:
    """12 Acme and 8 Zeta products, one image each, and a second image for every third;
    the Acme ones in a dataset. Returns the dataset."""
    dataset = await make_dataset(owner, tenant, "Summer")
    ids = await make_products(owner, storage, tenant, 12, dataset_id=dataset)
    ids += await make_products(owner, storage, tenant, 8, brand="Zeta", sku_prefix="Z")
    await add_images(owner, storage, tenant, ids[::3])
    return dataset


SELECTIONS = ["image ids", "product ids", "product filter"]


@pytest.mark.parametrize("by", SELECTIONS)
async def test_inline_and_background_end_in_the_same_state(
    by: str, http: Any, owner: asyncpg.Connection, storage: Storage, settings: Settings
) -> None:
    a = await make_tenant(owner, "inline-co")
    b = await make_tenant(owner, "background-co")
    datasets = [await twin_catalog(owner, storage, t) for t in (a, b)]

    async def selection(tenant: Tenant, dataset: int) -> dict[str, Any]:
        if by == "image ids":
            return {"ids": ids_of((await image_ids(owner, tenant))[4:22])}
        if by == "product ids":
            products = await owner.fetch(
                "SELECT id FROM products WHERE tenant_id = $1 ORDER BY id LIMIT 15", tenant.id
            )
            return {"products": {"ids": ids_of([r["id"] for r in products[2:]])}}
        return {"products": {"filter": {"datasetId": str(dataset), "category": ["Category 1"]}}}

    gql_a, gql_b = GraphQLClient(http, a.token), GraphQLClient(http, b.token)
    inline = (
        await gql_a(
            DELETE_IMAGES,
            {"selection": await selection(a, datasets[0]), "options": {"mode": "INLINE"}},
        )
    )["deleteImages"]
    queued = (
        await gql_b(
            DELETE_IMAGES, {"selection": await selection(b, datasets[1]), "options": BACKGROUND}
        )
    )["deleteImages"]
    assert inline["__typename"] == "DeleteImagesSummary", inline
    assert queued["__typename"] == "JobQueued", queued
    assert queued["job"]["total"] == inline["matched"]

    await run_worker(settings.model_copy(update={"batch_size": 4}))
    job = (await gql_b(JOB, {"id": queued["job"]["id"]}))["job"]
    assert job["status"] == "SUCCEEDED"
    assert inline["succeeded"] == inline["matched"] > 0
    for key in ("succeeded", "failed", "skipped"):
        assert job[key] == inline[key], key
    assert job["result"]["deletedFiles"] == inline["deletedFiles"] == inline["succeeded"]
    assert job["result"]["missingFiles"] == inline["missingFiles"] == 0
    assert await catalog_state(owner, storage, a) == await catalog_state(owner, storage, b)
    assert await owner.fetchval("SELECT count(*) FROM file_deletions") == 0


async def test_images_and_their_files_are_removed_and_the_products_kept(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    products = await make_products(owner, storage, tenant, 3)
    backs = await add_images(owner, storage, tenant, products)
    result = (await gql(DELETE_IMAGES, {"selection": {"products": {"ids": ids_of(products[:2])}}}))[
        "deleteImages"
    ]
    assert (result["matched"], result["succeeded"], result["deletedFiles"]) == (4, 4, 4)
    assert result["missingFiles"] == 0
    for product in products[:2]:
        assert (await gql(IMAGES, {"id": str(product)}))["product"]["images"] == []
    kept = (await gql(IMAGES, {"id": str(products[2])}))["product"]["images"]
    assert len(kept) == 2
    files = await stored_names(storage, suffix=".svg")
    assert files == sorted([f"{products[2]}.svg", f"{products[2]}-back.svg"])
    assert await owner.fetchval("SELECT count(*) FROM products") == 3
    assert await owner.fetchval("SELECT count(*) FROM file_deletions") == 0

    # One image of a product, by its id.
    result = (await gql(DELETE_IMAGES, {"selection": {"ids": [str(backs[2])]}}))["deleteImages"]
    assert (result["succeeded"], result["deletedFiles"]) == (1, 1)
    assert await stored_names(storage, suffix=".svg") == [f"{products[2]}.svg"]


@pytest.mark.parametrize("mode", ["INLINE", "BACKGROUND"])
async def test_a_file_already_missing_is_counted_not_fatal(
    mode: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    products = await make_products(owner, storage, tenant, 5)
    await storage.delete_many([f"{tenant.id}/images/{products[1]}.svg"])
    result = (
        await gql(
            DELETE_IMAGES, {"selection": {"products": {"filter": {}}}, "options": {"mode": mode}}
        )
    )["deleteImages"]
    if mode == "BACKGROUND":
        await run_worker(settings.model_copy(update={"batch_size": 2}))
        job = (await gql(JOB, {"id": result["job"]["id"]}))["job"]
        assert (job["status"], job["succeeded"], job["failed"]) == ("SUCCEEDED", 5, 0)
        result = job["result"]
    assert (result["succeeded"], result["deletedFiles"], result["missingFiles"]) == (5, 4, 1)
    assert await owner.fetchval("SELECT count(*) FROM product_images") == 0
    assert await stored_names(storage, suffix=".svg") == []


async def test_a_file_another_image_still_shows_is_kept(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    products = await make_products(owner, storage, tenant, 2)
    shared = f"{tenant.id}/images/{products[0]}.svg"
    await owner.execute(
        "UPDATE product_images SET storage_key = $1 WHERE product_id = $2", shared, products[1]
    )
    result = (await gql(DELETE_IMAGES, {"selection": {"products": {"ids": [str(products[0])]}}}))[
        "deleteImages"
    ]
    assert (result["succeeded"], result["deletedFiles"], result["missingFiles"]) == (1, 0, 0)
    assert await storage.existing([shared]) == {shared}
    images = (await gql(IMAGES, {"id": str(products[1])}))["product"]["images"]
    assert [i["url"] for i in images] == [f"/files/{shared}"]


async def test_dry_run_counts_what_would_go_and_changes_nothing(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    products = await make_products(owner, storage, tenant, 1200)
    await storage.delete_many([f"{tenant.id}/images/{products[0]}.svg"])
    before = await catalog_state(owner, storage, tenant)
    result = (
        await gql(
            DELETE_IMAGES,
            {"selection": {"products": {"filter": {}}}, "options": {"dryRun": True}},
        )
    )["deleteImages"]
    assert result["__typename"] == "DeleteImagesSummary"
    assert result["dryRun"] is True
    assert (result["matched"], result["succeeded"]) == (1200, 1200)
    assert (result["deletedFiles"], result["missingFiles"]) == (1199, 1)
    assert [p["id"] for p in result["sample"]] == ids_of(products[:10])
    assert await catalog_state(owner, storage, tenant) == before
    assert await owner.fetchval("SELECT count(*) FROM file_deletions") == 0
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_images_deleted_before_the_job_reaches_them_are_skipped(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 4)
    images = await image_ids(owner, tenant)
    queued = (
        await gql(DELETE_IMAGES, {"selection": {"ids": ids_of(images)}, "options": BACKGROUND})
    )["deleteImages"]
    await owner.execute("DELETE FROM product_images WHERE id = $1", images[1])
    await run_worker(settings)
    job = (await gql(JOB, {"id": queued["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["skipped"], job["failed"]) == (
        "SUCCEEDED",
        3,
        1,
        0,
    )
    assert job["result"]["deletedFiles"] == 3


REJECTIONS: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("neither ids nor products", {}, "INVALID_SELECTION", ["selection"]),
    (
        "both ids and products",
        {"ids": ["1"], "products": {"filter": {}}},
        "INVALID_SELECTION",
        ["selection"],
    ),
    ("empty ids", {"ids": []}, "EMPTY_SELECTION", ["selection", "ids"]),
    ("malformed image id", {"ids": ["x"]}, "INVALID_ID", ["selection", "ids", "0"]),
    ("unknown image id", {"ids": ["999999"]}, "NOT_FOUND", ["selection", "ids"]),
    (
        "products without ids or filter",
        {"products": {}},
        "INVALID_SELECTION",
        ["selection", "products"],
    ),
    (
        "unknown product id",
        {"products": {"ids": ["999999"]}},
        "NOT_FOUND",
        ["selection", "products", "ids"],
    ),
    (
        "malformed product id",
        {"products": {"ids": ["1", "-2"]}},
        "INVALID_ID",
        ["selection", "products", "ids", "1"],
    ),
    (
        "filter on a missing dataset",
        {"products": {"filter": {"datasetId": "777"}}},
        "NOT_FOUND",
        ["selection", "products", "filter", "datasetId"],
    ),
]


@pytest.mark.parametrize(
    ("selection", "code", "field"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
async def test_a_bad_selection_is_rejected_with_its_field_and_changes_nothing(
    selection: dict[str, Any],
    code: str,
    field: list[str],
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    await make_products(owner, storage, tenant, 3)
    before = await catalog_state(owner, storage, tenant)
    result = (await gql(DELETE_IMAGES, {"selection": selection, "options": BACKGROUND}))[
        "deleteImages"
    ]
    assert result["__typename"] == "Rejected", result
    assert (result["code"], result["field"]) == (code, field)
    assert await catalog_state(owner, storage, tenant) == before
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_another_tenants_images_are_not_found(
    http: Any, owner: asyncpg.Connection, storage: Storage
) -> None:
    a = await make_tenant(owner, "a-co")
    b = await make_tenant(owner, "b-co")
    await make_products(owner, storage, a, 2)
    foreign = await image_ids(owner, a)
    result = (
        await GraphQLClient(http, b.token)(DELETE_IMAGES, {"selection": {"ids": ids_of(foreign)}})
    )["deleteImages"]
    assert (result["code"], result["field"]) == ("NOT_FOUND", ["selection", "ids"])
    assert await owner.fetchval("SELECT count(*) FROM product_images") == 2
    assert len(await stored_names(storage, suffix=".svg")) == 2
