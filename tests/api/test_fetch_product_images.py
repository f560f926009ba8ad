"""fetchProductImages: sources given inline or uploaded, downloaded from a real image
server into storage, shown as the products' images; downloads that fail are item errors;
bad input is refused with nothing staged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from tests.api.queries import JOB
from tests.image_server import JPEG, PNG, ImageServer
from tests.support import GraphQLClient, Tenant, run_worker

FETCH = """
mutation($sources: [ImageSourceInput!], $upload: Upload, $options: BulkOptions) {
  fetchProductImages(sources: $sources, upload: $upload, options: $options) {
    __typename
    ... on FetchProductImagesSummary {
      matched succeeded failed skipped dryRun imagesAdded alreadyPresent
      errors { itemId row column code message }
      sample { sku }
    }
    ... on JobQueued { job { id status total } }
    ... on Rejected { code message field }
  }
}"""

IMAGES = """
query($id: ID!) { product(id: $id) { sku images { id url contentType position } } }"""

RETRY_JOB = """
mutation($id: ID!) {
  retryJob(id: $id) {
    __typename
    ... on JobQueued { job { id status total } }
    ... on Rejected { code message field }
  }
}"""

BACKGROUND = {"mode": "BACKGROUND"}
SKUS = ("TEA-1", "CHOC-1", "OIL-1")


@pytest.fixture
def allow_private() -> bool:
    """The image server listens on 127.0.0.1: downloads from it are allowed unless a test
    says otherwise."""
    return True


@pytest.fixture
def settings(settings: Settings, allow_private: bool) -> Settings:
    return settings.model_copy(
        update={
            "allow_private_networks": allow_private,
            "fetch_timeout_seconds": 1.0,
            "fetch_max_retries": 0,
            "fetch_max_bytes": 512 * 1024,
            "fetch_requests_per_second_per_host": 1000.0,
        }
    )


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    server = ImageServer(slow_seconds=5.0, huge_bytes=4 * 1024 * 1024)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def catalog(
    owner: asyncpg.Connection, tenant: Tenant, other_tenant: Tenant
) -> dict[str, int]:
    """The tenant's products by SKU (another tenant has a SECRET-1)."""
    await owner.execute(
        "INSERT INTO products (tenant_id, sku, name) VALUES ($1, 'SECRET-1', 'Secret')",
        other_tenant.id,
    )
    ids: dict[str, int] = {}
    for sku in SKUS:
        ids[sku] = await owner.fetchval(
            "INSERT INTO products (tenant_id, sku, name) VALUES ($1, $2, $3) RETURNING id",
            tenant.id,
            sku,
            f"Product {sku}",
        )
    return ids


async def fetch(gql: GraphQLClient, sources: list[dict[str, Any]], **variables: Any) -> Any:
    return (await gql(FETCH, {"sources": sources, **variables}))["fetchProductImages"]


async def post_upload(
    http: httpx.AsyncClient,
    tenant: Tenant,
    content: bytes,
    filename: str,
    *,
    extra: dict[str, Any] | None = None,
) -> httpx.Response:
    """fetchProductImages with `content` as the uploaded file (GraphQL multipart request)."""
    operations = {"query": FETCH, "variables": {"upload": None, **(extra or {})}}
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
    return body["data"]["fetchProductImages"]


async def nothing_staged(owner: asyncpg.Connection) -> bool:
    staged = await owner.fetchval(
        "SELECT (SELECT count(*) FROM image_sources) + (SELECT count(*) FROM image_source_rows)"
    )
    jobs = await owner.fetchval("SELECT count(*) FROM jobs")
    return bool(staged == 0 and jobs == 0)


# Refused requests: testable without a single download.

GOOD = {"sku": "TEA-1", "url": "https://images.example.com/tea.png"}
REJECTIONS: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("neither sources nor upload", {"sources": None}, "INVALID_INPUT", ["sources"]),
    ("no sources", {"sources": []}, "EMPTY_SOURCES", ["sources"]),
    ("more than 1,000 sources", {"sources": [GOOD] * 1001}, "TOO_MANY_SOURCES", ["sources"]),
    (
        "a source naming no product",
        {"sources": [GOOD, {"url": "https://images.example.com/a.png"}]},
        "MISSING_PRODUCT",
        ["sources", "1"],
    ),
    (
        "a source whose product and SKU are blank",
        {"sources": [{"productId": " ", "sku": "  ", "url": GOOD["url"]}]},
        "MISSING_PRODUCT",
        ["sources", "0"],
    ),
    (
        "a malformed product id",
        {"sources": [{"productId": "12x", "url": GOOD["url"]}]},
        "INVALID_ID",
        ["sources", "0", "productId"],
    ),
    (
        "a URL that is not http(s)",
        {"sources": [GOOD, GOOD, {"sku": "A", "url": "ftp://images.example.com/a.png"}]},
        "INVALID_URL",
        ["sources", "2", "url"],
    ),
    (
        "a URL that cannot be parsed",
        {"sources": [{"sku": "A", "url": "http://[::1"}]},
        "INVALID_URL",
        ["sources", "0", "url"],
    ),
    (
        "a URL without a host",
        {"sources": [{"sku": "A", "url": "https:///a.png"}]},
        "INVALID_URL",
        ["sources", "0", "url"],
    ),
    (
        "a blank URL",
        {"sources": [{"sku": "A", "url": " "}]},
        "MISSING_VALUE",
        ["sources", "0", "url"],
    ),
    (
        "an idempotency key too long",
        {"sources": [GOOD], "options": {"idempotencyKey": "k" * 256}},
        "INVALID_IDEMPOTENCY_KEY",
        ["options", "idempotencyKey"],
    ),
]


@pytest.mark.parametrize(
    ("variables", "code", "field"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
async def test_bad_input_is_rejected_with_its_field_and_nothing_staged(
    variables: dict[str, Any],
    code: str,
    field: list[str],
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    catalog: dict[str, int],
) -> None:
    result = (await gql(FETCH, variables))["fetchProductImages"]
    assert result["__typename"] == "Rejected", result
    assert (result["code"], result["field"]) == (code, field)
    assert result["message"]
    assert await nothing_staged(owner)


@pytest.mark.parametrize("allow_private", [False])
async def test_a_private_address_is_refused_up_front_unless_allowed(
    gql: GraphQLClient, owner: asyncpg.Connection, catalog: dict[str, int]
) -> None:
    for url in ("http://127.0.0.1:9/a.png", "http://169.254.169.254/", "http://[::1]/a.png"):
        result = await fetch(gql, [GOOD, {"sku": "TEA-1", "url": url}])
        assert (result["code"], result["field"]) == ("PRIVATE_NETWORK", ["sources", "1", "url"])
    assert await nothing_staged(owner)


async def test_an_upload_that_is_not_a_file_is_rejected(
    gql: GraphQLClient, owner: asyncpg.Connection
) -> None:
    result = (await gql(FETCH, {"upload": "sku,url\nA,https://x.example/a.png\n"}))[
        "fetchProductImages"
    ]
    assert (result["code"], result["field"]) == ("UNSUPPORTED_FORMAT", ["upload"])
    assert await nothing_staged(owner)


async def test_both_sources_and_an_upload_are_rejected(
    http: httpx.AsyncClient, tenant: Tenant, owner: asyncpg.Connection
) -> None:
    content = b"sku,url\nTEA-1,https://images.example.com/tea.png\n"
    response = await post_upload(http, tenant, content, "images.csv", extra={"sources": [GOOD]})
    result = response.json()["data"]["fetchProductImages"]
    assert (result["code"], result["field"]) == ("INVALID_INPUT", ["sources"])
    assert await nothing_staged(owner)


UPLOAD_REJECTIONS = [
    ("an empty file", b"", "images.csv", "EMPTY_UPLOAD"),
    ("only a header", b"sku,url\n", "images.csv", "EMPTY_UPLOAD"),
    ("no url column", b"sku,link\nA,https://x.example/a.png\n", "images.csv", "INVALID_HEADER"),
    ("no product column", b"name,url\nA,https://x.example/a.png\n", "images.csv", "INVALID_HEADER"),
    ("a column twice", b"sku,url,url\nA,x,y\n", "images.csv", "INVALID_HEADER"),
    ("not CSV or JSONL", b"sku,url\nA,https://x.example/a.png\n", "a.xlsx", "UNSUPPORTED_FORMAT"),
    ("an empty JSONL file", b"\n\n", "images.jsonl", "EMPTY_UPLOAD"),
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
    assert await nothing_staged(owner)


async def test_a_dry_run_downloads_nothing_and_keeps_nothing(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    images: ImageServer,
    catalog: dict[str, int],
) -> None:
    sources = [
        {"sku": "TEA-1", "url": images.url("img/tea.png")},
        {"productId": str(catalog["OIL-1"]), "url": images.url("img/oil.jpg")},
    ]
    result = await fetch(gql, sources, options={"dryRun": True})
    assert result["__typename"] == "FetchProductImagesSummary", result
    assert (result["dryRun"], result["matched"], result["failed"]) == (True, 2, 0)
    assert sum(images.requests.values()) == 0
    assert await nothing_staged(owner)
    assert await owner.fetchval("SELECT count(*) FROM product_images") == 0


async def test_a_large_upload_is_queued_with_one_item_a_row(
    http: httpx.AsyncClient, tenant: Tenant, owner: asyncpg.Connection, catalog: dict[str, int]
) -> None:
    rows = "".join(f"TEA-1,https://images.example.com/{i}.png\n" for i in range(1001))
    content = ("sku,url\n" + rows).encode()
    refused = await upload(http, tenant, content, "images.csv", options={"mode": "INLINE"})
    assert (refused["code"], refused["field"]) == ("INLINE_LIMIT_EXCEEDED", ["options", "mode"])
    assert await nothing_staged(owner)
    queued = await upload(http, tenant, content, "images.csv")
    assert (queued["__typename"], queued["job"]["total"]) == ("JobQueued", 1001)


async def test_staged_sources_go_after_the_retention_unless_a_job_still_names_them(
    http: httpx.AsyncClient, tenant: Tenant, owner: asyncpg.Connection, catalog: dict[str, int]
) -> None:
    content = b"sku,url\nTEA-1,https://images.example.com/1.png\n"
    queued = await upload(http, tenant, content, "images.csv", options=BACKGROUND)
    await owner.execute("UPDATE image_sources SET created_at = now() - interval '8 days'")
    assert await owner.fetchval("SELECT remove_expired_image_sources(interval '7 days')") == 0
    await owner.execute("DELETE FROM jobs WHERE id = $1", queued["job"]["id"])
    assert await owner.fetchval("SELECT remove_expired_image_sources(interval '7 days')") == 1
    assert await owner.fetchval("SELECT count(*) FROM image_source_rows") == 0


async def test_staged_sources_are_kept_per_tenant(owner: asyncpg.Connection) -> None:
    secured = await owner.fetch(
        """SELECT c.relname, c.relrowsecurity, count(p.policyname) AS policies
           FROM pg_class c LEFT JOIN pg_policies p ON p.tablename = c.relname
           WHERE c.relname IN ('image_sources', 'image_source_rows')
           GROUP BY c.relname, c.relrowsecurity ORDER BY c.relname"""
    )
    assert [tuple(r) for r in secured] == [
        ("image_source_rows", True, 1),
        ("image_sources", True, 1),
    ]


# Downloads: these run once the engine of calling operations and the outside client are in.


async def test_two_images_are_fetched_inline_and_shown_on_their_products(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    tenant: Tenant,
    images: ImageServer,
    catalog: dict[str, int],
) -> None:
    sources = [
        {"sku": "TEA-1", "url": images.url("img/tea.png")},
        {"productId": str(catalog["OIL-1"]), "url": images.url("img/oil.jpg")},
    ]
    result = await fetch(gql, sources)
    assert result["__typename"] == "FetchProductImagesSummary", result
    assert (result["succeeded"], result["failed"], result["imagesAdded"]) == (2, 0, 2)

    tea = (await gql(IMAGES, {"id": str(catalog["TEA-1"])}))["product"]
    oil = (await gql(IMAGES, {"id": str(catalog["OIL-1"])}))["product"]
    assert [i["contentType"] for i in tea["images"]] == ["image/png"]
    assert [i["contentType"] for i in oil["images"]] == ["image/jpeg"]
    auth = {"Authorization": f"Bearer {tenant.token}"}
    stored = await http.get(tea["images"][0]["url"], headers=auth)
    assert (stored.status_code, stored.content) == (200, PNG)
    assert stored.headers["content-type"].startswith("image/png")
    assert (await http.get(oil["images"][0]["url"], headers=auth)).content == JPEG

    # The same URLs again: already there, skipped without a download.
    before = sum(images.requests.values())
    again = await fetch(gql, sources)
    assert (again["succeeded"], again["skipped"], again["alreadyPresent"]) == (0, 2, 2)
    assert sum(images.requests.values()) == before


async def test_new_images_go_after_the_ones_a_product_has(
    gql: GraphQLClient, images: ImageServer, catalog: dict[str, int]
) -> None:
    first = await fetch(gql, [{"sku": "CHOC-1", "url": images.url("img/front.png")}])
    assert first["succeeded"] == 1, first
    sources = [
        {"sku": "CHOC-1", "url": images.url("img/back.gif")},
        {"sku": "CHOC-1", "url": images.url("img/side.webp")},
        # Given twice in one request: fetched once.
        {"sku": "CHOC-1", "url": images.url("img/side.webp")},
        # Followed to /img/top.png.
        {"sku": "CHOC-1", "url": images.url("redirect/top.png")},
    ]
    result = await fetch(gql, sources)
    assert (result["succeeded"], result["skipped"], result["failed"]) == (3, 1, 0), result
    shown = (await gql(IMAGES, {"id": str(catalog["CHOC-1"])}))["product"]["images"]
    assert [(i["position"], i["contentType"]) for i in shown] == [
        (0, "image/png"),
        (1, "image/gif"),
        (2, "image/webp"),
        (3, "image/png"),
    ]


async def test_an_uploaded_csv_is_fetched_by_a_job(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    tenant: Tenant,
    owner: asyncpg.Connection,
    settings: Settings,
    images: ImageServer,
    catalog: dict[str, int],
) -> None:
    lines = ["sku,productId,url"]
    for i in range(50):
        sku = SKUS[i % 3]
        if i % 2:
            lines.append(f",{catalog[sku]},{images.url(f'img/{i}.png')}")
        else:
            lines.append(f"{sku},,{images.url(f'img/{i}.jpg')}")
    content = ("\n".join(lines) + "\n").encode()
    queued = await upload(http, tenant, content, "images.csv", options=BACKGROUND)
    assert (queued["__typename"], queued["job"]["total"]) == ("JobQueued", 50), queued
    await run_worker(settings.model_copy(update={"batch_size": 20}))
    job = (await gql(JOB, {"id": queued["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("SUCCEEDED", 50, 0), job
    counts = await owner.fetch(
        """SELECT p.sku, count(*) AS n FROM product_images m JOIN products p ON p.id = m.product_id
           GROUP BY p.sku ORDER BY p.sku"""
    )
    assert [tuple(r) for r in counts] == [("CHOC-1", 17), ("OIL-1", 16), ("TEA-1", 17)]
    shown = (await gql(IMAGES, {"id": str(catalog["TEA-1"])}))["product"]["images"]
    assert [i["position"] for i in shown] == list(range(17))


async def test_downloads_that_fail_are_item_errors(
    gql: GraphQLClient,
    settings: Settings,
    images: ImageServer,
    catalog: dict[str, int],
) -> None:
    sources = [
        {"sku": "TEA-1", "url": images.url("img/ok.png")},
        {"sku": "TEA-1", "url": images.url("missing.png")},
        {"sku": "TEA-1", "url": images.url("fake.png")},
        {"sku": "TEA-1", "url": images.url("page.html")},
        {"sku": "TEA-1", "url": images.url("huge.png")},
        {"sku": "TEA-1", "url": images.url("slow.png")},
        {"sku": "NO-SUCH-SKU", "url": images.url("img/a.png")},
        {"sku": "SECRET-1", "url": images.url("img/b.png")},
        {"productId": str(catalog["OIL-1"]), "sku": "TEA-1", "url": images.url("img/c.png")},
    ]
    queued = await fetch(gql, sources, options=BACKGROUND)
    await run_worker(settings)
    job = (await gql(JOB, {"id": queued["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("PARTIAL", 1, 8), job
    codes = {e["node"]["itemId"]: e["node"]["code"] for e in job["errors"]["edges"]}
    assert codes == {
        "2": "NOT_FOUND",
        "3": "NOT_AN_IMAGE",
        "4": "NOT_AN_IMAGE",
        "5": "TOO_LARGE",
        "6": codes["6"],
        "7": "NOT_FOUND",
        "8": "NOT_FOUND",
        "9": "SKU_MISMATCH",
    }
    assert codes["6"] not in ("NOT_AN_IMAGE", "TOO_LARGE"), codes  # the slow answer timed out


async def test_bad_rows_of_an_upload_are_item_errors_naming_row_and_column(
    http: httpx.AsyncClient,
    tenant: Tenant,
    images: ImageServer,
    catalog: dict[str, int],
) -> None:
    lines = [
        {"sku": "TEA-1", "url": images.url("img/1.png")},
        {"url": images.url("img/2.png")},
        {"sku": "TEA-1", "url": "ftp://example.com/a.png"},
        "not an object",
        {"productId": "abc", "url": images.url("img/3.png")},
        {"productId": catalog["OIL-1"], "url": images.url("img/4.gif")},
    ]
    content = "\n".join(json.dumps(line) for line in lines).encode()
    result = await upload(http, tenant, content, "images.jsonl")
    assert result["__typename"] == "FetchProductImagesSummary", result
    assert (result["succeeded"], result["failed"]) == (2, 4)
    assert [(e["row"], e["column"], e["code"]) for e in result["errors"]] == [
        (2, None, "MISSING_PRODUCT"),
        (3, "url", "INVALID_URL"),
        (4, None, "MALFORMED_ROW"),
        (5, "productId", "INVALID_ID"),
    ]


async def test_private_addresses_are_refused_when_fetched(
    gql: GraphQLClient,
    settings: Settings,
    images: ImageServer,
    catalog: dict[str, int],
) -> None:
    # Accepted by an API that allows them, refused by a worker that does not: the address
    # is checked where the download happens, after the name is resolved.
    sources = [
        {"sku": "TEA-1", "url": images.url("img/a.png")},
        {"sku": "TEA-1", "url": f"http://localhost:{images.port}/img/b.png"},
    ]
    queued = await fetch(gql, sources, options=BACKGROUND)
    await run_worker(settings.model_copy(update={"allow_private_networks": False}))
    job = (await gql(JOB, {"id": queued["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("PARTIAL", 0, 2), job
    assert {e["node"]["code"] for e in job["errors"]["edges"]} == {"PRIVATE_NETWORK"}
    assert sum(images.requests.values()) == 0


async def test_a_retry_fetches_the_failed_sources_again(
    gql: GraphQLClient,
    settings: Settings,
    images: ImageServer,
    catalog: dict[str, int],
) -> None:
    images.gone.add("later")
    sources = [
        {"sku": "TEA-1", "url": images.url("img/now.png")},
        {"sku": "TEA-1", "url": images.url("img/later.png")},
    ]
    queued = await fetch(gql, sources, options=BACKGROUND)
    await run_worker(settings)
    job = (await gql(JOB, {"id": queued["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("PARTIAL", 1, 1), job
    images.gone.clear()
    retried = (await gql(RETRY_JOB, {"id": queued["job"]["id"]}))["retryJob"]
    assert retried["__typename"] == "JobQueued", retried
    assert retried["job"]["total"] == 1
    await run_worker(settings)
    child = (await gql(JOB, {"id": retried["job"]["id"]}))["job"]
    assert (child["status"], child["succeeded"], child["failed"]) == ("SUCCEEDED", 1, 0), child
    shown = (await gql(IMAGES, {"id": str(catalog["TEA-1"])}))["product"]["images"]
    assert len(shown) == 2
