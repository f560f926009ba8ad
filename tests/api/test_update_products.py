"""updateProducts, inline and in the background, seen through the API."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import JOB, SUMMARY_FIELDS
from tests.support import GraphQLClient, Tenant, make_products, make_tenant, run_worker

UPDATE = f"""
mutation($selection: ProductSelection!, $patch: ProductPatch!, $options: BulkOptions) {{
  updateProducts(selection: $selection, patch: $patch, options: $options) {{
    {SUMMARY_FIELDS}
    ... on UpdateProductsSummary {{ identifiersSet identifiersRemoved }}
  }}
}}"""

PRODUCT = """
query($id: ID!) {
  product(id: $id) {
    name brand category status price attributes identifiers { kind value }
  }
}"""

BACKGROUND = {"mode": "BACKGROUND"}


def ids_of(ids: list[int]) -> dict[str, Any]:
    return {"ids": [str(i) for i in ids]}


async def catalog_state(owner: asyncpg.Connection, tenant: Tenant) -> dict[str, Any]:
    """Every product field and identifier of the tenant, keyed by SKU so two tenants compare."""
    products = await owner.fetch(
        """SELECT sku, name, brand, category, status, price, attributes::text
           FROM products WHERE tenant_id = $1 ORDER BY sku""",
        tenant.id,
    )
    identifiers = await owner.fetch(
        # Values the factories derive from the product id are compared without it.
        """SELECT p.sku, i.kind, regexp_replace(i.value, '-' || p.id || '$', '-#')
           FROM product_identifiers i
           JOIN products p ON p.id = i.product_id WHERE i.tenant_id = $1 ORDER BY 1, 2""",
        tenant.id,
    )
    return {
        "products": [tuple(r) for r in products],
        "identifiers": [tuple(r) for r in identifiers],
    }


async def seed_catalog(owner: asyncpg.Connection, storage: Storage, tenant: Tenant) -> list[int]:
    """20 products with attributes and, for every other one, an OLD identifier."""
    ids = await make_products(owner, storage, tenant, 20, with_images=False)
    await owner.execute(
        """UPDATE products SET attributes = '{"size": "M", "origin": "DE"}'
           WHERE tenant_id = $1""",
        tenant.id,
    )
    await owner.execute(
        """INSERT INTO product_identifiers (tenant_id, product_id, kind, value)
           SELECT $1, i, 'OLD', 'old-' || i FROM unnest($2::bigint[]) AS i""",
        tenant.id,
        ids[::2],
    )
    return ids


async def run_job(gql: GraphQLClient, settings: Settings, job_id: str, **update: Any) -> Any:
    await run_worker(settings.model_copy(update=update))
    return (await gql(JOB, {"id": job_id}))["job"]


PATCH = {
    "brand": "Nova",
    "price": "12.50",
    "attributes": {"color": "red", "size": None},
    "setIdentifiers": [{"kind": "mpn", "value": "NOVA"}],
    "removeIdentifierKinds": ["OLD"],
}


@pytest.mark.parametrize("by", ["ids", "filter"])
async def test_inline_and_background_end_in_the_same_state(
    by: str, http: Any, owner: asyncpg.Connection, storage: Storage, settings: Settings
) -> None:
    a = await make_tenant(owner, "inline-co")
    b = await make_tenant(owner, "background-co")
    ids_a = await seed_catalog(owner, storage, a)
    ids_b = await seed_catalog(owner, storage, b)

    def variables(ids: list[int], options: dict[str, Any]) -> dict[str, Any]:
        if by == "ids":
            selection = ids_of(ids[3:17])
        else:
            selection = {"filter": {"category": ["Category 1", "Category 2", "Category 3"]}}
        return {"selection": selection, "patch": PATCH, "options": options}

    gql_a, gql_b = GraphQLClient(http, a.token), GraphQLClient(http, b.token)
    inline = (await gql_a(UPDATE, variables(ids_a, {"mode": "INLINE"})))["updateProducts"]
    queued = (await gql_b(UPDATE, variables(ids_b, BACKGROUND)))["updateProducts"]
    assert inline["__typename"] == "UpdateProductsSummary", inline
    assert queued["__typename"] == "JobQueued", queued
    assert queued["job"]["total"] == inline["matched"]

    job = await run_job(gql_b, settings, queued["job"]["id"], batch_size=4)
    assert job["status"] == "SUCCEEDED"
    assert inline["succeeded"] == inline["matched"] > 0
    for key in ("succeeded", "failed", "skipped"):
        assert job[key] == inline[key], key
    assert job["result"]["identifiersSet"] == inline["identifiersSet"] == inline["matched"]
    assert job["result"]["identifiersRemoved"] == inline["identifiersRemoved"] > 0
    assert await catalog_state(owner, a) == await catalog_state(owner, b)


async def test_the_patch_sets_clears_merges_and_replaces_what_it_names(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    ids = await seed_catalog(owner, storage, tenant)
    before = (await gql(PRODUCT, {"id": str(ids[0])}))["product"]
    untouched = (await gql(PRODUCT, {"id": str(ids[1])}))["product"]
    patch = {
        "name": "  Renamed  ",
        "brand": None,
        "status": "ACTIVE",
        "attributes": {"color": "red", "size": None},
        "setIdentifiers": [{"kind": "gtin", "value": " 04012345678901 "}],
        "removeIdentifierKinds": ["old", "NEVER-SET"],
    }
    result = (await gql(UPDATE, {"selection": ids_of(ids[:1]), "patch": patch}))["updateProducts"]
    assert (result["matched"], result["succeeded"], result["failed"]) == (1, 1, 0)
    assert (result["identifiersSet"], result["identifiersRemoved"]) == (1, 1)
    product = (await gql(PRODUCT, {"id": str(ids[0])}))["product"]
    assert product["name"] == "Renamed"
    assert product["brand"] is None
    assert product["category"] == before["category"]
    assert product["status"] == "ACTIVE"
    assert product["price"] == before["price"]
    assert product["attributes"] == {"origin": "DE", "color": "red"}
    assert product["identifiers"] == [
        {"kind": "GTIN", "value": "04012345678901"},
        {"kind": "MPN", "value": f"MPN-{ids[0]}"},
    ]
    assert (await gql(PRODUCT, {"id": str(ids[1])}))["product"] == untouched


async def test_products_the_patch_would_not_change_are_skipped(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    acme = await make_products(owner, storage, tenant, 3, brand="Acme", with_images=False)
    zeta = await make_products(
        owner, storage, tenant, 2, brand="Zeta", sku_prefix="Z", with_images=False
    )
    before = await owner.fetch("SELECT id, updated_at FROM products ORDER BY id")
    result = (await gql(UPDATE, {"selection": ids_of(acme + zeta), "patch": {"brand": "Acme"}}))[
        "updateProducts"
    ]
    assert (result["matched"], result["succeeded"], result["skipped"]) == (5, 2, 3)
    after = dict(await owner.fetch("SELECT id, updated_at FROM products ORDER BY id"))
    assert [i for i, at in before if after[i] != at] == zeta


async def test_dry_run_counts_what_would_change_and_changes_nothing(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    ids = await seed_catalog(owner, storage, tenant)
    before = await catalog_state(owner, tenant)
    result = (
        await gql(
            UPDATE,
            {
                "selection": {"filter": {}},
                "patch": PATCH,
                "options": {"dryRun": True, "mode": "BACKGROUND"},
            },
        )
    )["updateProducts"]
    assert result["__typename"] == "UpdateProductsSummary"
    assert result["dryRun"] is True
    assert (result["matched"], result["succeeded"], result["identifiersRemoved"]) == (20, 20, 10)
    assert [p["id"] for p in result["sample"]] == [str(i) for i in ids[:10]]
    assert await catalog_state(owner, tenant) == before
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def give_gtin(owner: asyncpg.Connection, tenant: Tenant, product_id: int, value: str) -> None:
    await owner.execute(
        """INSERT INTO product_identifiers (tenant_id, product_id, kind, value)
           VALUES ($1, $2, 'GTIN', $3)""",
        tenant.id,
        product_id,
        value,
    )


async def test_an_identifier_another_product_holds_is_an_item_error(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    ids = await make_products(owner, storage, tenant, 4, with_images=False)
    holder, others = ids[2], [ids[0], ids[1], ids[3]]
    await give_gtin(owner, tenant, holder, "4006381333931")
    patch = {"brand": "Nova", "setIdentifiers": [{"kind": "GTIN", "value": "4006381333931"}]}
    result = (await gql(UPDATE, {"selection": ids_of(ids), "patch": patch}))["updateProducts"]
    # The holder takes the rest of the patch; the others would take its GTIN, so they fail.
    assert (result["matched"], result["succeeded"], result["failed"]) == (4, 1, 3)
    assert [e["itemId"] for e in result["errors"]] == [str(i) for i in others]
    for error in result["errors"]:
        assert error["code"] == "IDENTIFIER_TAKEN"
        assert "4006381333931" in error["message"]
        assert f"product {holder}" in error["message"]
    brands = await owner.fetch("SELECT id, brand FROM products ORDER BY id")
    assert {r["id"]: r["brand"] for r in brands} == {
        i: ("Nova" if i == holder else "Acme") for i in ids
    }
    assert await owner.fetchval("SELECT count(*) FROM product_identifiers WHERE kind = 'GTIN'") == 1


async def test_a_unique_identifier_given_to_many_goes_to_the_first_in_the_background_too(
    http: Any, owner: asyncpg.Connection, storage: Storage, settings: Settings
) -> None:
    a = await make_tenant(owner, "inline-co")
    b = await make_tenant(owner, "background-co")
    ids_a = await make_products(owner, storage, a, 5, with_images=False)
    ids_b = await make_products(owner, storage, b, 5, with_images=False)
    patch = {"category": "Clash", "setIdentifiers": [{"kind": "EAN", "value": "777"}]}
    gql_a, gql_b = GraphQLClient(http, a.token), GraphQLClient(http, b.token)
    inline = (await gql_a(UPDATE, {"selection": ids_of(ids_a), "patch": patch}))["updateProducts"]
    queued = (
        await gql_b(UPDATE, {"selection": ids_of(ids_b), "patch": patch, "options": BACKGROUND})
    )["updateProducts"]
    assert (inline["succeeded"], inline["failed"]) == (1, 4)
    assert {e["code"] for e in inline["errors"]} == {"IDENTIFIER_TAKEN"}
    assert all("'777'" in e["message"] for e in inline["errors"])
    # Cut into batches of two, the job comes to the same answer.
    job = await run_job(gql_b, settings, queued["job"]["id"], batch_size=2)
    assert (job["status"], job["succeeded"], job["failed"]) == ("PARTIAL", 1, 4)
    assert [e["node"]["itemId"] for e in job["errors"]["edges"]] == [str(i) for i in ids_b[1:]]
    assert await catalog_state(owner, a) == await catalog_state(owner, b)
    holders = await owner.fetch("SELECT product_id FROM product_identifiers WHERE kind = 'EAN'")
    assert sorted(r["product_id"] for r in holders) == [ids_a[0], ids_b[0]]


async def test_identifiers_of_another_tenant_do_not_clash(
    http: Any, owner: asyncpg.Connection, storage: Storage
) -> None:
    a = await make_tenant(owner, "a-co")
    b = await make_tenant(owner, "b-co")
    ids_a = await make_products(owner, storage, a, 1, with_images=False)
    ids_b = await make_products(owner, storage, b, 1, with_images=False)
    await give_gtin(owner, a, ids_a[0], "123")
    patch = {"setIdentifiers": [{"kind": "GTIN", "value": "123"}]}
    result = (
        await GraphQLClient(http, b.token)(UPDATE, {"selection": ids_of(ids_b), "patch": patch})
    )["updateProducts"]
    assert (result["succeeded"], result["failed"]) == (1, 0)


async def test_strict_inline_run_changes_nothing_when_an_item_fails(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    patch = {"brand": "Nova", "setIdentifiers": [{"kind": "UPC", "value": "0123"}]}
    before = await catalog_state(owner, tenant)
    strict = (
        await gql(
            UPDATE,
            {"selection": ids_of(ids), "patch": patch, "options": {"errorPolicy": "ABORT"}},
        )
    )["updateProducts"]
    assert (strict["succeeded"], strict["failed"], strict["identifiersSet"]) == (0, 2, 0)
    assert await catalog_state(owner, tenant) == before
    lenient = (await gql(UPDATE, {"selection": ids_of(ids), "patch": patch}))["updateProducts"]
    assert (lenient["succeeded"], lenient["failed"], lenient["identifiersSet"]) == (1, 2, 1)
    assert await owner.fetchval("SELECT count(*) FROM products WHERE brand = 'Nova'") == 1


@pytest.mark.parametrize(
    ("policy", "status", "nova"), [("CONTINUE", "PARTIAL", 5), ("ABORT", "FAILED", 4)]
)
async def test_a_job_leaves_the_failing_batch_unapplied_only_when_strict(
    policy: str,
    status: str,
    nova: int,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 6, with_images=False)
    queued = (
        await gql(
            UPDATE,
            {
                "selection": ids_of(ids),
                "patch": {"brand": "Nova"},
                "options": {"mode": "BACKGROUND", "errorPolicy": policy},
            },
        )
    )["updateProducts"]
    # Deleted after the job was accepted: that item fails in the third batch.
    await owner.execute("DELETE FROM products WHERE id = $1", ids[4])
    job = await run_job(gql, settings, queued["job"]["id"], batch_size=2)
    assert job["status"] == status
    assert [(e["node"]["itemId"], e["node"]["code"]) for e in job["errors"]["edges"]] == [
        (str(ids[4]), "NOT_FOUND")
    ]
    brands = await owner.fetch("SELECT id, brand FROM products ORDER BY id")
    assert [r["id"] for r in brands if r["brand"] == "Nova"] == [*ids[:4], ids[5]][:nova]


REJECTIONS: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("sets nothing", {}, "PATCH_EMPTY", ["patch"]),
    ("only empty lists", {"setIdentifiers": [], "attributes": {}}, "PATCH_EMPTY", ["patch"]),
    ("negative price", {"price": "-0.01"}, "INVALID_PRICE", ["patch", "price"]),
    ("a fraction of a cent", {"price": "1.999"}, "INVALID_PRICE", ["patch", "price"]),
    ("empty name", {"name": ""}, "BLANK_VALUE", ["patch", "name"]),
    ("blank brand", {"brand": "   "}, "BLANK_VALUE", ["patch", "brand"]),
    ("null name", {"name": None}, "NULL_NOT_ALLOWED", ["patch", "name"]),
    ("null status", {"status": None}, "NULL_NOT_ALLOWED", ["patch", "status"]),
    ("attributes a list", {"attributes": [1, 2]}, "INVALID_ATTRIBUTES", ["patch", "attributes"]),
    ("attributes a string", {"attributes": "red"}, "INVALID_ATTRIBUTES", ["patch", "attributes"]),
    (
        "empty identifier value",
        {"setIdentifiers": [{"kind": "GTIN", "value": ""}]},
        "BLANK_VALUE",
        ["patch", "setIdentifiers", "0", "value"],
    ),
    (
        "empty identifier kind",
        {"setIdentifiers": [{"kind": "MPN", "value": "1"}, {"kind": " ", "value": "2"}]},
        "BLANK_VALUE",
        ["patch", "setIdentifiers", "1", "kind"],
    ),
    (
        "the barcode as an identifier",
        {"setIdentifiers": [{"kind": "barcode", "value": "1"}]},
        "INVALID_IDENTIFIER",
        ["patch", "setIdentifiers", "0", "kind"],
    ),
    (
        "a kind twice",
        {"setIdentifiers": [{"kind": "gtin", "value": "1"}, {"kind": "GTIN", "value": "2"}]},
        "DUPLICATE_IDENTIFIER_KIND",
        ["patch", "setIdentifiers"],
    ),
    (
        "a kind set and removed",
        {"setIdentifiers": [{"kind": "MPN", "value": "1"}], "removeIdentifierKinds": ["mpn"]},
        "CONFLICTING_IDENTIFIER_KINDS",
        ["patch", "removeIdentifierKinds"],
    ),
    (
        "an empty kind to remove",
        {"removeIdentifierKinds": ["MPN", ""]},
        "BLANK_VALUE",
        ["patch", "removeIdentifierKinds", "1"],
    ),
]


@pytest.mark.parametrize("mode", ["AUTO", "BACKGROUND"])
@pytest.mark.parametrize(
    ("patch", "code", "field"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
async def test_a_bad_patch_is_rejected_with_its_field_and_changes_nothing(
    mode: str,
    patch: dict[str, Any],
    code: str,
    field: list[str],
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    ids = await seed_catalog(owner, storage, tenant)
    before = await catalog_state(owner, tenant)
    result = (
        await gql(UPDATE, {"selection": ids_of(ids), "patch": patch, "options": {"mode": mode}})
    )["updateProducts"]
    assert result["__typename"] == "Rejected", result
    assert (result["code"], result["field"]) == (code, field)
    assert result["message"]
    assert await catalog_state(owner, tenant) == before
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_an_unknown_status_in_the_patch_is_a_graphql_validation_error(
    gql: GraphQLClient,
) -> None:
    response = await gql.post(UPDATE, {"selection": {"ids": ["1"]}, "patch": {"status": "GONE"}})
    body = response.json()
    assert body["data"] is None
    assert "GONE" in body["errors"][0]["message"]
