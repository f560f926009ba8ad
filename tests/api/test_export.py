"""The streaming export: every row, as in the database, for the tenant only; and a client that
goes away mid-download leaves the pool clean."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from bulkops.db.export import EXPORT_COLUMNS, ExportFormat
from bulkops.db.pool import create_pool
from bulkops.selection import ProductFilter
from bulkops.services import copy_stream
from bulkops.services.catalog_download import catalog_stream
from bulkops.storage import Storage
from tests.support import Tenant, make_dataset, make_products

TRICKY_NAME = 'Comma, "quoted"\nsecond line\r\nback\\slash \\n é 日本 😀 \x01'
TRICKY_ATTRIBUTES = {
    "note": 'a,b "c"\n\\d \\u0041',
    "ü": [1, 2.5, None, True],
    "nested": {"tab": "\t", "empty": ""},
}


def auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}"}


async def make_tricky_catalog(
    owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> list[int]:
    """Twelve products, three of them with values that break naive CSV and JSON writers."""
    ids = await make_products(owner, storage, tenant, 12, with_images=False)
    await owner.execute(
        """UPDATE products SET name = $2, brand = 'Zeta, Inc.', category = NULL, barcode = NULL,
                  price = NULL, attributes = $3::jsonb, description = $2
           WHERE id = $1""",
        ids[0],
        TRICKY_NAME,
        json.dumps(TRICKY_ATTRIBUTES),
    )
    await owner.execute(
        "UPDATE products SET name = $2, brand = '', attributes = $3::jsonb WHERE id = $1",
        ids[1],
        "  leading and trailing spaces  ",
        json.dumps({"quote": '"', "backslash": "\\", "both": '\\"'}),
    )
    await owner.execute(
        """INSERT INTO product_identifiers (tenant_id, product_id, kind, value)
           VALUES ($1, $2, 'GTIN', 'x"\\y'), ($1, $2, 'Ref, old', E'line\\nbreak')""",
        tenant.id,
        ids[2],
    )
    await owner.execute("DELETE FROM product_identifiers WHERE product_id = $1", ids[3])
    return ids


async def database_rows(owner: asyncpg.Connection, tenant: Tenant) -> list[dict[str, Any]]:
    """The tenant's products as the export should show them, in id order."""
    rows = await owner.fetch(
        """SELECT p.id, p.sku, p.barcode, p.name, p.brand, p.category, p.description,
                  p.status, p.price, p.attributes::text AS attributes, p.created_at,
                  p.updated_at,
                  (SELECT coalesce(json_object_agg(kind, value), '{}')::text
                   FROM product_identifiers WHERE product_id = p.id) AS identifiers
           FROM products p WHERE p.tenant_id = $1 ORDER BY p.id""",
        tenant.id,
    )
    return [
        {
            **dict(r),
            "attributes": json.loads(r["attributes"]),
            "identifiers": json.loads(r["identifiers"]),
        }
        for r in rows
    ]


def parse_csv(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    rows = []
    for values in reader:
        row: dict[str, Any] = dict(zip(header, values, strict=True))
        row["id"] = int(row["id"])
        row["price"] = Decimal(row["price"]) if row["price"] else None
        row["attributes"] = json.loads(row["attributes"])
        row["identifiers"] = json.loads(row["identifiers"])
        row["created_at"] = datetime.fromisoformat(row["created_at"])
        row["updated_at"] = datetime.fromisoformat(row["updated_at"])
        rows.append(row)
    return header, rows


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    rows = []
    for line in text.split("\n")[:-1]:
        row = json.loads(line, parse_float=Decimal)
        if row["price"] is not None:
            row["price"] = Decimal(row["price"])
        row["created_at"] = datetime.fromisoformat(row["created_at"])
        row["updated_at"] = datetime.fromisoformat(row["updated_at"])
        rows.append(row)
    return rows


def as_csv_expects(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cannot tell NULL from an empty string: both are an empty field."""
    return {k: "" if v is None and k not in ("price",) else v for k, v in row.items()}


async def export_ids(http: httpx.AsyncClient, tenant: Tenant, params: Any) -> list[int]:
    response = await http.get("/export/products.jsonl", params=params, headers=auth(tenant))
    assert response.status_code == 200, response.text
    return [json.loads(line)["id"] for line in response.text.splitlines()]


async def test_csv_export_is_every_row_as_in_the_database(
    http: httpx.AsyncClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    await make_tricky_catalog(owner, storage, tenant)
    response = await http.get("/export/products.csv", headers=auth(tenant))

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="products-')
    assert disposition.endswith('.csv"')
    header, rows = parse_csv(response.content.decode("utf-8"))
    assert header == list(EXPORT_COLUMNS)
    expected = [as_csv_expects(r) for r in await database_rows(owner, tenant)]
    assert len(rows) == 12
    assert rows == expected
    assert rows[0]["name"] == TRICKY_NAME
    assert rows[0]["description"] == TRICKY_NAME
    assert rows[0]["attributes"] == TRICKY_ATTRIBUTES
    assert rows[2]["identifiers"] == {"GTIN": 'x"\\y', "MPN": f"MPN-{rows[2]['id']}",
                                      "Ref, old": "line\nbreak"}  # fmt: skip
    assert rows[3]["identifiers"] == {}


async def test_jsonl_export_is_every_row_as_in_the_database(
    http: httpx.AsyncClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    await make_tricky_catalog(owner, storage, tenant)
    response = await http.get("/export/products.jsonl", headers=auth(tenant))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].endswith('.jsonl"')
    rows = parse_jsonl(response.content.decode("utf-8"))
    assert [list(r) for r in rows] == [list(EXPORT_COLUMNS)] * 12
    assert rows == await database_rows(owner, tenant)
    assert rows[0]["name"] == TRICKY_NAME
    assert rows[0]["description"] == TRICKY_NAME
    assert rows[0]["brand"] == "Zeta, Inc."
    assert rows[0]["price"] is None
    assert rows[1]["brand"] == ""
    assert rows[1]["attributes"] == {"quote": '"', "backslash": "\\", "both": '\\"'}


async def test_filters_select_the_rows(
    http: httpx.AsyncClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    dataset = await make_dataset(owner, tenant, "Summer")
    acme = await make_products(owner, storage, tenant, 3, brand="Acme", with_images=False)
    zeta = await make_products(
        owner, storage, tenant, 3, brand="Zeta", status="ACTIVE", sku_prefix="ZT",
        dataset_id=dataset, with_images=False,
    )  # fmt: skip
    hooli = await make_products(
        owner, storage, tenant, 2, brand="Hooli", status="ARCHIVED", sku_prefix="HO",
        with_images=False,
    )  # fmt: skip

    assert await export_ids(http, tenant, {}) == acme + zeta + hooli
    assert await export_ids(http, tenant, {"status": "ACTIVE"}) == zeta
    assert await export_ids(http, tenant, [("status", "ACTIVE"), ("status", "ARCHIVED")]) == (
        zeta + hooli
    )
    assert await export_ids(http, tenant, [("brand", "Acme"), ("brand", "Hooli")]) == acme + hooli
    assert await export_ids(http, tenant, {"datasetId": str(dataset)}) == zeta
    assert await export_ids(http, tenant, {"skuPrefix": "HO"}) == hooli
    assert await export_ids(http, tenant, {"skuPrefix": "ZT", "status": "DRAFT"}) == []
    assert await export_ids(http, tenant, {"category": "Category 1"}) == [
        acme[0],
        zeta[0],
        hooli[0],
    ]
    await owner.execute("UPDATE products SET name = 'Blue kettle' WHERE id = $1", acme[1])
    assert await export_ids(http, tenant, {"search": "KETTLE"}) == [acme[1]]
    await owner.execute(
        "UPDATE products SET created_at = '2020-01-01T00:00:00Z' WHERE id = ANY($1::bigint[])",
        acme,
    )
    assert await export_ids(http, tenant, {"createdBefore": "2021-01-01"}) == acme
    # An unencoded "+" of the offset arrives as a space, and is read as "+".
    assert await export_ids(http, tenant, "createdAfter=2020-06-01T00:00:00+02:00") == zeta + hooli
    assert await export_ids(http, tenant, {"createdAfter": "2020-06-01T00:00:00+02:00"}) == (
        zeta + hooli
    )
    csv_response = await http.get(
        "/export/products.csv", params={"brand": "Hooli"}, headers=auth(tenant)
    )
    assert [r["id"] for r in parse_csv(csv_response.text)[1]] == hooli


async def test_another_tenants_token_exports_none_of_our_rows(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    dataset = await make_dataset(owner, tenant, "Ours")
    await make_products(owner, storage, tenant, 5, dataset_id=dataset, with_images=False)
    theirs = await make_products(
        owner, storage, other_tenant, 2, sku_prefix="THEIRS", with_images=False
    )

    response = await http.get("/export/products.csv", headers=auth(other_tenant))
    _, rows = parse_csv(response.text)
    assert [r["id"] for r in rows] == theirs
    assert all(r["sku"].startswith("THEIRS") for r in rows)
    assert await export_ids(http, other_tenant, {}) == theirs
    refused = await http.get(
        "/export/products.jsonl", params={"datasetId": str(dataset)}, headers=auth(other_tenant)
    )
    assert refused.status_code == 404
    error = refused.json()["errors"][0]
    assert error["extensions"] == {"code": "NOT_FOUND", "field": ["datasetId"]}


@pytest.mark.parametrize("path", ["/export/products.csv", "/export/products.jsonl"])
async def test_requests_without_a_valid_token_get_401(http: httpx.AsyncClient, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        response = await http.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=GONE", "status"),
        ("status=ACTIVE&status=active", "status"),
        ("datasetId=abc", "datasetId"),
        ("datasetId=0", "datasetId"),
        ("datasetId=1&datasetId=2", "datasetId"),
        ("createdAfter=yesterday", "createdAfter"),
        ("createdBefore=2024-13-01", "createdBefore"),
        ("colour=red", "colour"),
        ("brand=Acme&sku_prefix=A", "sku_prefix"),
        ("search=a%00b", "search"),
    ],
)
async def test_a_bad_parameter_gets_400_naming_it(
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    query: str,
    field: str,
) -> None:
    await make_products(owner, storage, tenant, 2, with_images=False)
    for fmt in ("csv", "jsonl"):
        response = await http.get(f"/export/products.{fmt}?{query}", headers=auth(tenant))
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["errors"][0]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": [field]}
        assert field in error["message"]


async def test_an_unknown_dataset_gets_404(http: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await http.get(
        "/export/products.csv", params={"datasetId": "424242"}, headers=auth(tenant)
    )
    assert response.status_code == 404
    assert response.json()["errors"][0]["extensions"] == {
        "code": "NOT_FOUND",
        "field": ["datasetId"],
    }


async def test_head_answers_the_headers_without_running_the_export(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await http.head("/export/products.csv", headers=auth(tenant))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content == b""


BIG = 20_000


async def make_big_catalog(owner: asyncpg.Connection, storage: Storage, tenant: Tenant) -> None:
    """About 25 MB of export: more than the socket buffers hold, so a client that stops
    reading holds the COPY back."""
    await make_products(owner, storage, tenant, BIG, with_images=False)
    await owner.execute(
        "UPDATE products SET attributes = jsonb_build_object('blurb', repeat('x', 1000))"
    )


async def export_sessions(owner: asyncpg.Connection) -> list[tuple[int, str]]:
    """The app's sessions (pid, state) that are copying or sit in an open transaction."""
    rows = await owner.fetch(
        """SELECT pid, state FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'bulkops'
             AND (state LIKE 'idle in transaction%' OR (state = 'active' AND query LIKE 'COPY%'))"""
    )
    return [(r["pid"], r["state"]) for r in rows]


async def app_sessions(owner: asyncpg.Connection) -> dict[int, str]:
    rows = await owner.fetch(
        """SELECT pid, state FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'bulkops'"""
    )
    return {r["pid"]: r["state"] for r in rows}


async def wait_for_sessions(
    owner: asyncpg.Connection, predicate: Any, timeout: float = 10.0
) -> list[tuple[int, str]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        sessions = await export_sessions(owner)
        if predicate(sessions) or asyncio.get_running_loop().time() > deadline:
            return sessions
        await asyncio.sleep(0.05)


def copying_one(sessions: list[tuple[int, str]]) -> bool:
    return [state for _, state in sessions] == ["active"]


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Warnings and errors of the in-process server (uvicorn's loggers do not propagate)."""
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


async def test_a_client_that_disconnects_mid_stream_stops_the_copy_and_frees_the_connection(
    server: str,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    server_log: pytest.LogCaptureFixture,
) -> None:
    await make_big_catalog(owner, storage, tenant)
    async with (
        httpx.AsyncClient(base_url=server, timeout=30) as client,
        client.stream("GET", "/export/products.csv", headers=auth(tenant)) as response,
    ):
        assert response.status_code == 200
        body = response.aiter_raw()
        received = 0
        while received < 8192:
            received += len(await anext(body))
        # The client reads nothing more: the COPY waits for it instead of running ahead.
        await asyncio.sleep(0.5)
        copying = await export_sessions(owner)
        assert [state for _, state in copying] == ["active"]
        progress = "SELECT bytes_processed FROM pg_stat_progress_copy WHERE pid = $1"
        copied = await owner.fetchval(progress, copying[0][0])
        await asyncio.sleep(0.3)
        assert await owner.fetchval(progress, copying[0][0]) == copied
        assert copied < BIG * 1000 // 2
        # Closing the body closes the connection with most of it unread.
        await body.aclose()

    assert await wait_for_sessions(owner, lambda s: s == []) == []
    # The connection went back to the pool, idle, rather than being thrown away.
    assert (await app_sessions(owner)).get(copying[0][0]) == "idle"
    assert (await http.get("/healthz")).text == "ok"
    response = await http.get("/export/products.jsonl", headers=auth(tenant))
    assert response.status_code == 200
    assert len(response.text.splitlines()) == BIG
    gc.collect()
    await asyncio.sleep(0.1)
    assert [r.getMessage() for r in server_log.records if r.levelno >= logging.WARNING] == []


async def test_at_most_half_the_pool_exports_at_once(
    server: str,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    await make_big_catalog(owner, storage, tenant)
    # The test settings have a pool of 5: two exports at once.
    async with (
        httpx.AsyncClient(base_url=server, timeout=30) as first,
        httpx.AsyncClient(base_url=server, timeout=30) as second,
        first.stream("GET", "/export/products.csv", headers=auth(tenant)) as one,
        second.stream("GET", "/export/products.jsonl", headers=auth(tenant)) as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        third = await http.get("/export/products.csv", headers=auth(tenant))
        assert third.status_code == 429
        assert third.headers["retry-after"] == "5"
        assert third.json()["errors"][0]["extensions"]["code"] == "TOO_MANY_EXPORTS"
        # GraphQL still has connections.
        graphql = await http.post(
            "/graphql",
            json={"query": "{ products { totalCount } }"},
            headers=auth(tenant),
        )
        assert graphql.json()["data"]["products"]["totalCount"] == BIG
    # Both slots come back once the clients are gone.
    await wait_for_sessions(owner, lambda s: s == [])
    for _ in range(50):
        async with (
            httpx.AsyncClient(base_url=server, timeout=30) as first,
            httpx.AsyncClient(base_url=server, timeout=30) as second,
            first.stream("GET", "/export/products.csv", headers=auth(tenant)) as one,
            second.stream("GET", "/export/products.csv", headers=auth(tenant)) as two,
        ):
            statuses = [one.status_code, two.status_code]
        if statuses == [200, 200]:
            break
        await asyncio.sleep(0.1)
    assert statuses == [200, 200]


async def test_a_client_that_stops_reading_has_its_export_stopped(
    http: httpx.AsyncClient,
    server: str,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    server_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(copy_stream, "STALL_SECONDS", 0.5)
    await make_big_catalog(owner, storage, tenant)
    async with (
        httpx.AsyncClient(base_url=server, timeout=30) as client,
        client.stream("GET", "/export/products.csv", headers=auth(tenant)) as response,
    ):
        assert response.status_code == 200
        assert len(await wait_for_sessions(owner, copying_one)) == 1
        assert await wait_for_sessions(owner, lambda s: s == []) == []
        # Its slot is free again although the response is still open.
        for _ in range(2):
            other = await http.get(
                "/export/products.csv", params={"skuPrefix": "none"}, headers=auth(tenant)
            )
            assert other.status_code == 200
    assert [r.getMessage() for r in server_log.records] == [
        "export stopped: ExportStalledError: no data taken for 0.5 s"
    ]


async def drain(chunks: Any) -> None:
    async for _ in chunks:
        pass


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_closing_an_export_at_any_moment_returns_a_clean_connection(
    settings: Settings,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    server_log: pytest.LogCaptureFixture,
    fmt: ExportFormat,
) -> None:
    """As Starlette does when a client goes: the reader takes chunks as fast as they come, is
    cancelled at some moment, then the export is closed. The COPY is then as likely to be
    waiting for Postgres (or to have a chunk arrived, not yet handed over) as for the reader."""
    await make_products(owner, storage, tenant, 20_000, with_images=False)
    assert settings.database_url
    pool = await create_pool(settings.database_url, role=settings.app_role, min_size=1, max_size=1)
    try:
        for turns in [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144] * 2:
            stream = catalog_stream(pool, tenant.id, ProductFilter(), fmt)
            chunks = stream.chunks()
            reader = asyncio.create_task(drain(chunks))
            for _ in range(turns):
                await asyncio.sleep(0)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await chunks.aclose()
            await stream.aclose()
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT 1") == 1
                assert not conn.is_in_transaction()
            assert await export_sessions(owner) == []
        assert pool.get_size() == 1
        pid = await pool.fetchval("SELECT pg_backend_pid()")
        assert (await app_sessions(owner)) == {pid: "idle"}
    finally:
        await pool.close()
    assert [r.getMessage() for r in server_log.records] == []


async def read_into(lines: list[str], body: Any) -> None:
    async for line in body:
        lines.append(line)


async def test_a_failure_midway_cuts_the_response_short(
    server: str,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    """A client must not mistake a broken export for a complete one."""
    await make_big_catalog(owner, storage, tenant)
    async with (
        httpx.AsyncClient(base_url=server, timeout=30) as client,
        client.stream("GET", "/export/products.jsonl", headers=auth(tenant)) as response,
    ):
        body = response.aiter_lines()
        json.loads(await anext(body))
        copying = await wait_for_sessions(owner, copying_one)
        await owner.execute("SELECT pg_terminate_backend($1)", copying[0][0])
        received: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError):
            await read_into(received, body)
    assert 0 < len(received) < BIG - 1
    response = await http.get("/export/products.csv", headers=auth(tenant))
    assert response.text.count("\n") > BIG
