"""importProducts: an uploaded CSV or JSONL file, inline and in the background."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from bulkops.config import Settings
from bulkops.web.app import create_app
from tests.serving import QuickServer
from tests.support import GraphQLClient, Tenant, make_tenant, run_worker

IMPORT = """
mutation($upload: Upload!, $options: BulkOptions) {
  importProducts(upload: $upload, options: $options) {
    __typename
    ... on ImportProductsSummary {
      matched succeeded failed skipped dryRun created updated
      errors { itemId row column code message } sample { sku }
    }
    ... on JobQueued { job { id status total } }
    ... on Rejected { code message field }
  }
}"""

JOB = """
query($id: ID!) {
  job(id: $id) {
    status total processed succeeded failed skipped result
    errors(first: 500) { totalCount edges { node { itemId row column code message } } }
  }
}"""

RETRY = """
mutation($id: ID!) {
  retryJob(id: $id, scope: ALL) { __typename ... on Rejected { code field } }
}"""

COLUMNS = ["sku", "name", "barcode", "brand", "category", "status", "price", "attributes"]
HEADER = ",".join([*COLUMNS, "identifier:GTIN", "identifier:MPN"])
BACKGROUND = {"mode": "BACKGROUND"}


async def upload(
    http: httpx.AsyncClient,
    tenant: Tenant,
    content: bytes,
    *,
    filename: str = "products.csv",
    options: dict[str, Any] | None = None,
    preflight: bool = True,
) -> httpx.Response:
    """POST a file as the GraphQL multipart request spec has it: operations, map, 0."""
    operations = {"query": IMPORT, "variables": {"upload": None, "options": options}}
    headers = {"Authorization": f"Bearer {tenant.token}"}
    if preflight:
        headers["Apollo-Require-Preflight"] = "true"
    return await http.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.upload"]}),
        },
        files={"0": (filename, content, "application/octet-stream")},
        headers=headers,
    )


async def import_file(
    http: httpx.AsyncClient, tenant: Tenant, content: bytes, **kwargs: Any
) -> dict[str, Any]:
    response = await upload(http, tenant, content, **kwargs)
    body = response.json()
    assert response.status_code == 200, body
    assert not body.get("errors"), body["errors"]
    result: dict[str, Any] = body["data"]["importProducts"]
    return result


async def run_job(http: httpx.AsyncClient, tenant: Tenant, settings: Settings, job_id: str) -> Any:
    await run_worker(settings)
    return (await GraphQLClient(http, tenant.token)(JOB, {"id": job_id}))["job"]


def csv_file(*rows: str, header: str = HEADER) -> bytes:
    return "\n".join([header, *rows]).encode() + b"\n"


def as_csv(rows: list[dict[str, Any]]) -> bytes:
    """Rows as the CSV a spreadsheet writes: every column, empty when not given."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, "identifier:GTIN", "identifier:MPN"])
    for row in rows:
        ids = row.get("identifiers", {})
        attributes = json.dumps(row["attributes"]) if "attributes" in row else ""
        writer.writerow(
            [row.get(c, "") for c in COLUMNS[:7]]
            + [attributes, ids.get("GTIN", ""), ids.get("MPN", "")]
        )
    return out.getvalue().encode()


def as_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


async def catalog(owner: asyncpg.Connection, tenant: Tenant) -> dict[str, Any]:
    """The tenant's products and identifiers, keyed by SKU (ids differ between tenants)."""
    products = await owner.fetch(
        """SELECT sku, name, barcode, brand, category, status, price, attributes::text
           FROM products WHERE tenant_id = $1 ORDER BY sku""",
        tenant.id,
    )
    identifiers = await owner.fetch(
        """SELECT p.sku, i.kind, i.value FROM product_identifiers i
           JOIN products p ON p.id = i.product_id WHERE i.tenant_id = $1 ORDER BY 1, 2""",
        tenant.id,
    )
    return {
        "products": [tuple(r) for r in products],
        "identifiers": [tuple(r) for r in identifiers],
    }


async def seed(owner: asyncpg.Connection, tenant: Tenant, count: int) -> None:
    """`count` products OLD-1... with attributes and a GTIN, the same for every tenant."""
    await owner.execute(
        """WITH p AS (
             INSERT INTO products (tenant_id, sku, name, brand, status, price, attributes)
             SELECT $1, 'OLD-' || g, 'Old ' || g, 'Acme', 'ACTIVE', g + 0.5,
                    jsonb_build_object('size', 'M', 'origin', 'DE')
             FROM generate_series(1, $2) AS g ORDER BY g
             RETURNING id, sku)
           INSERT INTO product_identifiers (tenant_id, product_id, kind, value)
           SELECT $1, id, 'GTIN', '9' || lpad(substr(sku, 5), 12, '0') FROM p""",
        tenant.id,
        count,
    )


async def leftovers(owner: asyncpg.Connection) -> int:
    """Staged uploads and rows still in the database."""
    count: int = await owner.fetchval(
        "SELECT (SELECT count(*) FROM import_rows) + (SELECT count(*) FROM import_uploads)"
    )
    return count


def pairs(errors: list[dict[str, Any]]) -> list[tuple[int, str | None, str]]:
    return [(e["row"], e["column"], e["code"]) for e in errors]


def mixed_rows(count: int) -> list[dict[str, Any]]:
    """New products, updates of OLD-1..., unchanged rows and some bad ones, in file order."""
    rows: list[dict[str, Any]] = []
    for i in range(1, count + 1):
        if i % 3 == 0:
            # An update of an existing product: a new price and merged attributes.
            row: dict[str, Any] = {"sku": f"OLD-{i}", "price": f"{i}.25"}
            row["attributes"] = {"color": "red", "size": None}
        elif i % 7 == 0:
            row = {"sku": f"OLD-{i}", "name": f"Old {i}"}  # changes nothing
        else:
            row = {
                "sku": f"NEW-{i}",
                "name": f"New {i}",
                "brand": "Nova",
                "category": f"Category {i % 4}",
                "status": ["DRAFT", "ACTIVE", "ARCHIVED"][i % 3],
                "price": f"{i % 90}.99",
                "attributes": {"n": i},
                "identifiers": {"GTIN": f"{4000000000000 + i}", "MPN": f"M-{i}"},
            }
        if i % 97 == 0:
            row["price"] = "-1"
        elif i % 89 == 0:
            row["status"] = "GONE"
        elif i % 83 == 0 and row["sku"].startswith("NEW"):
            del row["name"]
        rows.append(row)
    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_inline_and_background_end_in_the_same_state(
    fmt: str, http: httpx.AsyncClient, owner: asyncpg.Connection, settings: Settings
) -> None:
    a = await make_tenant(owner, "inline-co")
    b = await make_tenant(owner, "background-co")
    for tenant in (a, b):
        await seed(owner, tenant, 3000)
    rows = mixed_rows(3000)
    content = as_csv(rows) if fmt == "csv" else as_jsonl(rows)
    filename = f"catalog.{fmt}"

    inline = await import_file(http, a, content, filename=filename, options={"mode": "INLINE"})
    queued = await import_file(http, b, content, filename=filename, options=BACKGROUND)
    assert inline["__typename"] == "ImportProductsSummary", inline
    assert queued["__typename"] == "JobQueued", queued
    assert queued["job"]["total"] == inline["matched"] == 3000

    job = await run_job(
        http, b, settings.model_copy(update={"batch_size": 700}), queued["job"]["id"]
    )
    assert job["status"] == "PARTIAL"
    for key in ("succeeded", "failed", "skipped"):
        assert job[key] == inline[key], key
    assert job["result"]["created"] == inline["created"] > 1500
    assert job["result"]["updated"] == inline["updated"] > 900
    assert inline["skipped"] > 100
    job_errors = [edge["node"] for edge in job["errors"]["edges"]]
    assert pairs(job_errors) == pairs(inline["errors"])
    assert inline["failed"] == len(inline["errors"]) > 50
    assert {e["code"] for e in inline["errors"]} == {
        "INVALID_PRICE",
        "INVALID_STATUS",
        "MISSING_VALUE",
    }
    assert all(e["itemId"] is None for e in inline["errors"])
    state = await catalog(owner, a)
    assert state == await catalog(owner, b)
    updated = dict((p[0], p) for p in state["products"])["OLD-3"]
    assert updated[5:] == ("ACTIVE", Decimal("3.25"), '{"color": "red", "origin": "DE"}')
    assert await leftovers(owner) == 0


async def test_csv_and_jsonl_of_the_same_rows_import_the_same(
    http: httpx.AsyncClient, owner: asyncpg.Connection
) -> None:
    a = await make_tenant(owner, "csv-co")
    b = await make_tenant(owner, "jsonl-co")
    rows = mixed_rows(400)
    from_csv = await import_file(http, a, as_csv(rows), filename="rows.csv")
    from_jsonl = await import_file(http, b, as_jsonl(rows), filename="rows.jsonl")
    assert from_csv["created"] == from_jsonl["created"] > 200
    assert pairs(from_csv["errors"]) == [
        (row + 1, column, code) for row, column, code in pairs(from_jsonl["errors"])
    ]
    assert await catalog(owner, a) == await catalog(owner, b)


async def test_good_rows_land_and_bad_rows_name_their_row_and_column(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, settings: Settings
) -> None:
    await seed(owner, tenant, 2)
    overlong = b"L-1,Long," + b"x" * (10 * 1024 * 1024) + b",,,,,,,\n"
    content = (
        HEADER.encode() + b"\n"
        b"G-1,Good one,,Acme,,ACTIVE,10.00,,4000000000001,\n"  # 2
        b'B-1,"Broken quote,,,,,1.00,,,\n'  # 3
        b"B-2,Caf\xe9,,,,,,,,\n"  # 4: Latin-1, not UTF-8
        + overlong  # 5
        + b"B-3,Negative,,,,,-3,,,\n"  # 6
        b"B-4,Status,,,,GONE,,,,\n"  # 7
        b"B-5,,,,,,1.00,,,\n"  # 8: a new SKU needs a name
        b'B-6,Attributes,,,,,,"{""a"": }",,\n'  # 9
        b"B-7,Too,many,fields,,,,,,,,,\n"  # 10
        b"OLD-1,,,Zeta,,,,,,\n"  # 11: an update; the name stays
        b"B-8,Taken,,,,,,,9000000000002,\n"  # 12: OLD-2's GTIN
        b"G-1,Again,,,,,,,,\n"  # 13
        b'G-2,"Multi\nline name",,,,,,"{""k"": ""v""}",,\n'  # 14
        b"B-9,Decimal comma,,,,,12,50,,,\n"  # 16: 11 fields
    )
    queued = await import_file(http, tenant, content, options=BACKGROUND)
    job = await run_job(http, tenant, settings, queued["job"]["id"])
    assert job["status"] == "PARTIAL"
    assert (job["total"], job["succeeded"], job["failed"]) == (14, 3, 11)
    errors = [edge["node"] for edge in job["errors"]["edges"]]
    assert pairs(errors) == [
        (3, None, "MALFORMED_ROW"),
        (4, "name", "INVALID_ENCODING"),
        (5, None, "LINE_TOO_LONG"),
        (6, "price", "INVALID_PRICE"),
        (7, "status", "INVALID_STATUS"),
        (8, "name", "MISSING_VALUE"),
        (9, "attributes", "INVALID_ATTRIBUTES"),
        (10, None, "MALFORMED_ROW"),
        (12, "identifier:GTIN", "IDENTIFIER_TAKEN"),
        (13, "sku", "DUPLICATE_SKU"),
        (16, None, "MALFORMED_ROW"),
    ]
    messages = {e["row"]: e["message"] for e in errors}
    assert "not closed" in messages[3]
    assert "UTF-8" in messages[4]
    assert "'-3' is negative" in messages[6]
    assert "OLD-2" in messages[12]
    assert "row 2" in messages[13]
    skus = {p[0]: p for p in (await catalog(owner, tenant))["products"]}
    assert sorted(skus) == ["G-1", "G-2", "OLD-1", "OLD-2"]
    assert skus["G-2"][1] == "Multi\nline name"
    assert skus["OLD-1"][1:4] == ("Old 1", None, "Zeta")
    assert await leftovers(owner) == 0


async def test_a_unique_identifier_value_on_two_rows_lands_once(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    # A GTIN in its column and in an identifiers object (any case) is the same GTIN; an
    # MPN is not unique, so two products may share one.
    content = csv_file(
        "U-1,First,4000000000017,M-1,",
        'U-2,Second,,M-1,"{""gtin"": ""4000000000017""}"',
        "U-3,Third,4000000000024,,",
        header="sku,name,identifier:GTIN,identifier:MPN,identifiers",
    )
    result = await import_file(http, tenant, content, options={"mode": "INLINE"})
    assert (result["succeeded"], result["failed"]) == (2, 1)
    assert pairs(result["errors"]) == [(3, "identifiers", "IDENTIFIER_TAKEN")]
    assert "GTIN 4000000000017 is given to SKU U-1 on row 2" in result["errors"][0]["message"]
    state = await catalog(owner, tenant)
    assert [p[0] for p in state["products"]] == ["U-1", "U-3"]
    assert await leftovers(owner) == 0


async def test_jsonl_lines_that_are_not_objects_are_row_errors(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    content = (
        b'{"sku": "J-1", "name": "One", "price": 12.5, "attributes": {"a": [1, 2]},'
        b' "identifiers": {"gtin": "4000000000001", "MPN": null}}\n'
        b"\n"
        b'{"sku": "J-2", "name": "Two"\n'  # 3
        b'["J-3", "Three"]\n'  # 4
        b'{"sku": "J-4", "name": "Four", "identifiers": {"GTIN": 4000000000004}}\n'  # 5
        b'{"sku": "J-5", "name": "Caf\xe9"}\n'  # 6
        b'{"sku": "J-6", "name": "Six", "identifiers": "{\\"UPC\\": \\"012345678905\\"}"}\n'
    )
    result = await import_file(http, tenant, content, filename="rows.jsonl")
    assert pairs(result["errors"]) == [
        (3, None, "MALFORMED_ROW"),
        (4, None, "MALFORMED_ROW"),
        (5, "identifiers", "INVALID_IDENTIFIER"),
        (6, "name", "INVALID_ENCODING"),
    ]
    assert "not valid JSON" in result["errors"][0]["message"]
    assert "array" in result["errors"][1]["message"]
    state = await catalog(owner, tenant)
    assert [p[:2] for p in state["products"]] == [("J-1", "One"), ("J-6", "Six")]
    assert state["products"][0][6:] == (Decimal("12.50"), '{"a": [1, 2]}')
    assert state["identifiers"] == [
        ("J-1", "GTIN", "4000000000001"),
        ("J-6", "UPC", "012345678905"),
    ]


@pytest.mark.parametrize(
    ("content", "filename", "code"),
    [
        (b"", "products.csv", "EMPTY_UPLOAD"),
        (b"\xef\xbb\xbf \n\n", "products.csv", "EMPTY_UPLOAD"),
        (HEADER.encode() + b"\n\n", "products.csv", "EMPTY_UPLOAD"),
        (b"name,price\nWidget,1.00\n", "products.csv", "INVALID_HEADER"),
        (b"sku;name;price\nA;Widget;1.00\n", "products.csv", "INVALID_HEADER"),
        (b"sku,name,colour\nA,Widget,red\n", "products.csv", "UNKNOWN_COLUMN"),
        (
            b'{"sku": "A", "name": "B"}\n{"sku": "C", "colour": "red"}\n',
            "p.jsonl",
            "UNKNOWN_COLUMN",
        ),
        (b"PK\x03\x04 a spreadsheet", "products.xlsx", "UNSUPPORTED_FORMAT"),
        (b"PK\x03\x04 a spreadsheet", "products.csv", "UNSUPPORTED_FORMAT"),
        (b'[{"sku": "A"}]', "products.json", "UNSUPPORTED_FORMAT"),
    ],
)
async def test_a_file_that_cannot_be_imported_is_rejected_and_nothing_changes(
    content: bytes,
    filename: str,
    code: str,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    tenant: Tenant,
) -> None:
    await seed(owner, tenant, 3)
    before = await catalog(owner, tenant)
    result = await import_file(http, tenant, content, filename=filename)
    assert result["__typename"] == "Rejected", result
    assert (result["code"], result["field"]) == (code, ["upload"])
    assert await catalog(owner, tenant) == before
    assert await leftovers(owner) == 0
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0


async def test_the_header_names_the_missing_column(http: httpx.AsyncClient, tenant: Tenant) -> None:
    result = await import_file(http, tenant, b"name,price\nWidget,1.00\n")
    assert "no sku column" in result["message"]
    result = await import_file(http, tenant, b"sku,name,colour\nA,B,red\n")
    assert "'colour'" in result["message"]


async def test_inline_above_the_limit_is_refused(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    content = csv_file(*(f"N-{i},Name {i},,,,,,,," for i in range(10_001)))
    result = await import_file(http, tenant, content, options={"mode": "INLINE"})
    assert (result["code"], result["field"]) == ("INLINE_LIMIT_EXCEEDED", ["options", "mode"])
    assert await owner.fetchval("SELECT count(*) FROM products") == 0
    assert await leftovers(owner) == 0


async def test_a_dry_run_counts_and_changes_nothing(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, settings: Settings
) -> None:
    await seed(owner, tenant, 2000)
    before = await catalog(owner, tenant)
    rows = mixed_rows(1500)
    result = await import_file(
        http, tenant, as_csv(rows), options={"dryRun": True, "mode": "BACKGROUND"}
    )
    assert result["__typename"] == "ImportProductsSummary", result
    assert result["dryRun"] is True
    assert result["created"] > 700 and result["updated"] > 400
    assert result["failed"] == len(result["errors"]) > 20
    assert await catalog(owner, tenant) == before
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 0
    assert await leftovers(owner) == 0
    # The same file for real does what the dry run said.
    queued = await import_file(http, tenant, as_csv(rows), options=BACKGROUND)
    job = await run_job(http, tenant, settings, queued["job"]["id"])
    assert (job["result"]["created"], job["result"]["updated"], job["failed"]) == (
        result["created"],
        result["updated"],
        result["failed"],
    )


async def test_another_tenants_products_are_never_touched(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, other_tenant: Tenant
) -> None:
    await seed(owner, tenant, 3)
    await seed(owner, other_tenant, 3)
    await owner.execute(
        """UPDATE product_identifiers SET value = '5555555555555'
           WHERE tenant_id = $1 AND value = '9000000000003'""",
        other_tenant.id,
    )
    theirs = await catalog(owner, other_tenant)
    # OLD-2 exists in both; the GTIN is the other tenant's OLD-3's, which is no clash here.
    content = csv_file("OLD-2,Renamed,,,,,,,5555555555555,", "NEW-1,Brand new,,,,,,,,")
    result = await import_file(http, tenant, content)
    assert (result["created"], result["updated"], result["failed"]) == (1, 1, 0)
    assert await catalog(owner, other_tenant) == theirs
    mine = await catalog(owner, tenant)
    assert [p[:2] for p in mine["products"]] == [
        ("NEW-1", "Brand new"),
        ("OLD-1", "Old 1"),
        ("OLD-2", "Renamed"),
        ("OLD-3", "Old 3"),
    ]
    assert ("OLD-2", "GTIN", "5555555555555") in mine["identifiers"]


async def test_the_export_columns_import_back(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    content = (
        b"id,sku,barcode,name,brand,category,status,price,attributes,identifiers,"
        b"created_at,updated_at\n"
        b'7,E-1,400,Exported,Acme,Tools,ACTIVE,12.90,"{""a"": 1}","{""GTIN"": ""0400"", '
        b'""MPN"": ""M""}",2025-01-01T10:00:00.000000+00:00,2025-01-01T10:00:00.000000+00:00\n'
    )
    result = await import_file(http, tenant, content, filename="products-20250101T100000Z.csv")
    assert (result.get("created"), result.get("failed")) == (1, 0), result
    state = await catalog(owner, tenant)
    assert state["products"] == [
        ("E-1", "Exported", "400", "Acme", "Tools", "ACTIVE", Decimal("12.90"), '{"a": 1}')
    ]
    assert state["identifiers"] == [("E-1", "GTIN", "0400"), ("E-1", "MPN", "M")]


async def test_a_job_cannot_be_retried_and_an_idempotent_repeat_is_the_same_job(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, settings: Settings
) -> None:
    content = csv_file("R-1,One,,,,,,,,", "R-2,,,,,,,,,")
    options = {**BACKGROUND, "idempotencyKey": "import-1"}
    first = await import_file(http, tenant, content, options=options)
    again = await import_file(http, tenant, content, options=options)
    assert again["job"]["id"] == first["job"]["id"]
    other = await import_file(http, tenant, content + b"R-3,Three,,,,,,,,\n", options=options)
    assert other["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await owner.fetchval("SELECT count(*) FROM import_uploads") == 1
    job = await run_job(http, tenant, settings, first["job"]["id"])
    assert (job["status"], job["succeeded"], job["failed"]) == ("PARTIAL", 1, 1)
    assert await leftovers(owner) == 0
    retried = (await GraphQLClient(http, tenant.token)(RETRY, {"id": first["job"]["id"]}))[
        "retryJob"
    ]
    assert retried == {"__typename": "Rejected", "code": "NOT_RETRYABLE", "field": ["id"]}


async def test_a_cancelled_job_lets_go_of_its_rows(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant, settings: Settings
) -> None:
    content = csv_file(*(f"C-{i},Name {i},,,,,,,," for i in range(1500)))
    queued = await import_file(http, tenant, content)
    assert queued["__typename"] == "JobQueued"
    await owner.execute("UPDATE jobs SET status = 'CANCELLING'")
    job = await run_job(http, tenant, settings, queued["job"]["id"])
    assert job["status"] == "CANCELLED"
    assert await leftovers(owner) == 0


async def test_stale_uploads_are_swept(owner: asyncpg.Connection, tenant: Tenant) -> None:
    await owner.execute(
        """INSERT INTO import_uploads (id, tenant_id, row_count, created_at)
           VALUES ('00000000-0000-0000-0000-000000000001', $1, 1, now() - interval '2 hours'),
                  ('00000000-0000-0000-0000-000000000002', $1, 1, now())""",
        tenant.id,
    )
    await owner.execute(
        """INSERT INTO import_rows (upload_id, tenant_id, row_number)
           SELECT ('00000000-0000-0000-0000-00000000000' || g)::uuid, $1, 2
           FROM generate_series(1, 3) AS g""",
        tenant.id,
    )
    assert await owner.fetchval("SELECT remove_stale_imports(interval '1 hour')") == 1
    assert await owner.fetchval("SELECT count(*) FROM import_rows") == 1
    assert await owner.fetchval("SELECT count(*) FROM import_uploads") == 1


async def test_an_upload_that_is_not_a_file_is_rejected(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    result = await GraphQLClient(http, tenant.token)(IMPORT, {"upload": "sku,name\nA,B\n"})
    assert (result["importProducts"]["code"], result["importProducts"]["field"]) == (
        "UNSUPPORTED_FORMAT",
        ["upload"],
    )


async def test_an_upload_without_the_preflight_header_is_refused(
    http: httpx.AsyncClient, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    response = await upload(http, tenant, csv_file("A-1,Widget,,,,,,,,"), preflight=False)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "CSRF_PREFLIGHT_REQUIRED"
    assert await owner.fetchval("SELECT count(*) FROM products") == 0


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app built from `settings`, served on a loopback port, and a client for it."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    server = QuickServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.stop()
        await asyncio.wait({task}, timeout=5)


async def test_an_upload_over_the_limit_gets_413(
    settings: Settings, owner: asyncpg.Connection, tenant: Tenant
) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 2000})
    rows = [f"A-{i},Widget {i},,,,,,,," for i in range(200)]
    async with serve(small) as http:
        response = await upload(http, tenant, csv_file(*rows))
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "UPLOAD_TOO_LARGE"
        accepted = await upload(http, tenant, csv_file(*rows[:5]))
        assert accepted.json()["data"]["importProducts"]["created"] == 5
    assert await owner.fetchval("SELECT count(*) FROM products") == 5
