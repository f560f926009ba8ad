"""R1: a file of new products imported, then exported back, against COPY in and out.

Ours: a generated CSV of `plan.roundtrip_rows` new products (SKU, name, barcode, a brand
of its own, category, status, price, JSON attributes, an MPN identifier) sent to
`importProducts(upload: <CSV>, options: {mode: BACKGROUND})` as a multipart upload, timed
from sending it to the terminal state seen by a `job` subscriber; then
`GET /export/products.csv?brand=<the file's brand>` read to a file, timed from the request
to the last byte. The export is parsed and every row of the file must come back with the
values it was imported with (and no other row), or the workload fails.

Baseline, on the same database in the same run, as `bulkops_app` under row-level security
with the tenant set in every transaction (as the worker does): the same kind of file, with
SKUs, barcodes, brand and MPNs of its own, `COPY`'d into a temporary table, then one
`INSERT ... ON CONFLICT` of the products and their identifiers per batch of 5,000 rows (the
operation's batch size), each in its own transaction with a progress-row update; then
`COPY (<the export's own query, filtered by that brand>) TO STDOUT` into a file.

The result is the import alone (the goal: within 1.5 times the raw-SQL import): `ours` is
the import's seconds, `baseline` the raw-SQL import's, and the target is met at a ratio of
1.5 or less. The export and its COPY are in the note and the details, and the round trip's
check (every row back as imported) still fails the workload when a row differs.

What the baseline leaves out: the API, parsing and checking every row (types, lengths,
JSON, identifiers another product holds), staging rows under row-level security (COPY
is not allowed there), the job's lease and counters, and the per-row item errors.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.catalog import BenchError, connect_app, log
from bench.clients import watch_job
from bench.harness import Harness
from bench.results import Result
from bulkops.db.export import export_query
from bulkops.selection import ProductFilter

JOB_TIMEOUT = 4 * 3600.0
HTTP_TIMEOUT = 3600.0
# The operation's batch size (ImportProducts.thresholds.batch_size).
BASELINE_BATCH = 5000
# The goal: the import within 1.5 times the raw-SQL import.
TARGET_RATIO = 1.5
IMPORT = """mutation($file: Upload!) {
  importProducts(upload: $file, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message field } } }"""
COLUMNS = [
    "sku",
    "name",
    "barcode",
    "brand",
    "category",
    "status",
    "price",
    "attributes",
    "identifier:MPN",
]
ADJECTIVES = ("Organic", "Classic", "Premium", "Light", "Smoked", "Fresh", "Wild", "Dark")
NOUNS = ("Green Tea", "Olive Oil", "Coffee Beans", "Honey", "Chocolate", "Oat Drink", "Pasta")
SIZES = ("100g", "250g", "500g", "1kg", "330ml", "500ml", "1l")
CATEGORIES = ("Beverages", "Pantry", "Snacks", "Breakfast", "Dairy alternatives")
COLORS = ("red", "green", "blue", "black", "white")
STATUSES = ("DRAFT", "ACTIVE", "ARCHIVED")


@dataclass(frozen=True)
class Product:
    """A row of the file as the export must give it back."""

    name: str
    barcode: str
    brand: str
    category: str
    status: str
    price: str
    attributes: dict[str, Any]
    identifiers: dict[str, str]


def generate(rows: int, tag: str, seed: int) -> tuple[bytes, str, dict[str, Product]]:
    """The CSV of `rows` new products named by `tag`, its brand, and each row by SKU."""
    rng = random.Random(seed)
    brand = f"Roundtrip {tag}"
    prefix = "".join(c for c in tag if c.isalnum()).upper()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    expected: dict[str, Product] = {}
    code = 200 + seed % 100
    for i in range(rows):
        sku = f"{prefix}-{i:08d}"
        product = Product(
            name=f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(SIZES)} #{i}",
            barcode=f"{code}{i:010d}",
            brand=brand,
            category=rng.choice(CATEGORIES),
            status=rng.choice(STATUSES),
            price=f"{rng.randint(0, 999_999) / 100:.2f}",
            attributes={"color": rng.choice(COLORS), "pack": rng.randint(1, 24)},
            identifiers={"MPN": f"{prefix}-MPN-{i}"},
        )
        expected[sku] = product
        writer.writerow(
            [
                sku,
                product.name,
                product.barcode,
                brand,
                product.category,
                product.status,
                product.price,
                json.dumps(product.attributes),
                product.identifiers["MPN"],
            ]
        )
    return out.getvalue().encode(), brand, expected


def check_export(path: Path, expected: dict[str, Product]) -> int:
    """Rows of the export that differ from the file (missing, extra or changed): 0."""
    seen: set[str] = set()
    wrong = 0
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            sku = row["sku"]
            want = expected.get(sku)
            got = Product(
                name=row["name"],
                barcode=row["barcode"],
                brand=row["brand"],
                category=row["category"],
                status=row["status"],
                price=row["price"],
                attributes=json.loads(row["attributes"]),
                identifiers=json.loads(row["identifiers"]),
            )
            if want is None or sku in seen or got != want:
                wrong += 1
                if wrong <= 3:
                    log(f"R1: export row {sku!r} is {got}, expected {want}")
            seen.add(sku)
    return wrong + len(expected.keys() - seen)


async def import_file(
    h: Harness, base_url: str, ws_url: str, content: bytes
) -> tuple[float, float]:
    """Seconds from sending the upload to the terminal state of its job, and to the
    mutation's answer (the file staged)."""
    token = h.catalog.tenant.token
    async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as client:
        await client.get("/healthz")
        started = time.perf_counter()
        response = await client.post(
            "/graphql",
            data={
                "operations": json.dumps({"query": IMPORT, "variables": {"file": None}}),
                "map": json.dumps({"0": ["variables.file"]}),
            },
            files={"0": ("products.csv", content, "text/csv")},
            headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"},
        )
        result = response.json()["data"]["importProducts"]
        if result.get("__typename") != "JobQueued":
            raise BenchError(f"importProducts did not queue a job: {result}")
        answered = time.perf_counter() - started
        seen = await watch_job(ws_url, token, str(result["job"]["id"]), timeout=JOB_TIMEOUT)
    final = seen[-1].state
    seconds = seen[-1].mono - started
    log(f"R1: upload answered in {answered:.1f} s; the import ended {final['status']}")
    if final["status"] != "SUCCEEDED" or final["succeeded"] != final["total"]:
        raise BenchError(f"R1: the import ended {final}")
    return seconds, answered


async def export_file(base_url: str, token: str, brand: str, path: Path) -> float:
    """Seconds from the request to the last byte of the export, written to `path`."""
    async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as client:
        await client.get("/healthz")
        started = time.perf_counter()
        async with client.stream(
            "GET",
            "/export/products.csv",
            params={"brand": brand},
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            if response.status_code != 200:
                raise BenchError(f"the export answered {response.status_code}")
            with path.open("wb") as f:
                async for chunk in response.aiter_raw():
                    f.write(chunk)
        return time.perf_counter() - started


async def copy_out(h: Harness, brand: str, path: Path) -> float:
    """Seconds of the export's COPY of the brand's products into `path`."""
    query, args = export_query(ProductFilter(brand=(brand,)), "csv")
    conn = await connect_app(h.catalog.work_url)
    try:
        with path.open("wb") as f:

            async def sink(chunk: bytes) -> None:
                f.write(chunk)

            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    "SELECT set_config('bulkops.tenant_id', $1, true)", h.catalog.tenant.id
                )
                await conn.execute("SET LOCAL enable_bitmapscan = off")
                await conn.copy_from_query(query, *args, output=sink, format="csv", header=True)
            return time.perf_counter() - started
    finally:
        await conn.close()


STAGE = """CREATE TEMPORARY TABLE r1_stage (
             n int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, sku text, name text,
             barcode text, brand text, category text, status text, price text,
             attributes text, mpn text)"""
SET_TENANT = "SELECT set_config('bulkops.tenant_id', $1, true)"
START_PROGRESS = """INSERT INTO jobs (operation, status, selection, total, started_at)
                    VALUES ('importProducts', 'RUNNING', '{}'::jsonb, $1, clock_timestamp())
                    RETURNING id"""
PROGRESS = """UPDATE jobs SET cursor = $2, processed = processed + $3, succeeded = succeeded + $3,
                version = version + 1, updated_at = clock_timestamp()
              WHERE id = $1 AND tenant_id = current_tenant_id()"""
# The rows n > $1 and <= $2: their products upserted by SKU, then their identifiers.
UPSERT = """WITH up AS (
              INSERT INTO products AS p (sku, name, barcode, brand, category, status, price,
                                         attributes)
              SELECT s.sku, s.name, s.barcode, s.brand, s.category, s.status,
                     s.price::numeric, s.attributes::jsonb
              FROM r1_stage s WHERE s.n > $1 AND s.n <= $2 ORDER BY s.n
              ON CONFLICT (tenant_id, sku) DO UPDATE SET
                name = EXCLUDED.name, barcode = EXCLUDED.barcode, brand = EXCLUDED.brand,
                category = EXCLUDED.category, status = EXCLUDED.status,
                price = EXCLUDED.price, attributes = EXCLUDED.attributes, updated_at = now()
              RETURNING p.id, p.sku)
            INSERT INTO product_identifiers AS pi (product_id, kind, value)
            SELECT up.id, 'MPN', s.mpn
            FROM up JOIN r1_stage s ON s.sku = up.sku AND s.n > $1 AND s.n <= $2
            ORDER BY up.id
            ON CONFLICT (product_id, kind) DO UPDATE SET value = EXCLUDED.value"""


async def import_baseline(h: Harness, content: bytes) -> float:
    """Seconds of the raw-SQL import: COPY to a temporary table, then one upsert a batch."""
    conn = await connect_app(h.catalog.work_url)
    tenant_id = h.catalog.tenant.id
    try:
        async with conn.transaction():
            await conn.execute(SET_TENANT, tenant_id)
            job_id = await conn.fetchval(START_PROGRESS, 0)
        started = time.perf_counter()
        await conn.execute(STAGE)
        await conn.copy_to_table(
            "r1_stage",
            source=io.BytesIO(content),
            columns=[c if c != "identifier:MPN" else "mpn" for c in COLUMNS],
            format="csv",
            header=True,
        )
        total: int = await conn.fetchval("SELECT count(*) FROM r1_stage")
        for at in range(0, total, BASELINE_BATCH):
            end = min(at + BASELINE_BATCH, total)
            async with conn.transaction():
                await conn.execute(SET_TENANT, tenant_id)
                await conn.execute(UPSERT, at, end)
                await conn.execute(PROGRESS, job_id, end, end - at)
        return time.perf_counter() - started
    finally:
        await conn.close()


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else 0.0


async def r1(h: Harness) -> Result:
    # A copy of its own: a million products more would change what later runs measure.
    await h.fresh()
    h.invalidate()
    rows = h.plan.roundtrip_rows
    stamp = f"{int(time.time())}"
    ours_file, ours_brand, ours_rows = await asyncio.to_thread(generate, rows, f"R1 {stamp}", 1)
    base_file, base_brand, base_rows = await asyncio.to_thread(generate, rows, f"R1B {stamp}", 2)
    log(f"R1: {rows:,} rows, {len(ours_file) / 2**20:.0f} MB a file")
    out = h.catalog.data / "r1"
    out.mkdir(parents=True, exist_ok=True)
    async with h.running("R1") as stack:
        import_s, answered_s = await import_file(h, stack.base_url, stack.ws_url, ours_file)
        log(f"R1: import {import_s:.1f} s ({_rate(rows, import_s):,.0f} rows/s)")
        export_s = await export_file(
            stack.base_url, h.catalog.tenant.token, ours_brand, out / "ours.csv"
        )
        log(f"R1: export {export_s:.1f} s ({_rate(rows, export_s):,.0f} rows/s)")
    wrong = await asyncio.to_thread(check_export, out / "ours.csv", ours_rows)
    if wrong:
        raise BenchError(f"R1: {wrong} of {rows:,} rows did not come back as imported")
    base_import_s = await import_baseline(h, base_file)
    base_export_s = await copy_out(h, base_brand, out / "baseline.csv")
    base_wrong = await asyncio.to_thread(check_export, out / "baseline.csv", base_rows)
    if base_wrong:
        raise BenchError(f"R1: the baseline brought back {base_wrong} rows wrong")
    log(f"R1 baseline: import {base_import_s:.1f} s, export {base_export_s:.1f} s")
    size_mb = len(ours_file) / 2**20
    export_mb = (out / "ours.csv").stat().st_size / 2**20
    figures = {
        "import_rows_per_s": _rate(rows, import_s),
        "baseline_import_rows_per_s": _rate(rows, base_import_s),
        "export_rows_per_s": _rate(rows, export_s),
        "baseline_export_rows_per_s": _rate(rows, base_export_s),
    }
    ratio = import_s / base_import_s if base_import_s else None
    export_ratio = export_s / base_export_s if base_export_s else None
    return Result(
        ours=import_s,
        baseline=base_import_s,
        unit="s",
        target=f"ratio <= {TARGET_RATIO}",
        met=ratio is not None and ratio <= TARGET_RATIO,
        note=(
            f"import of {rows:,} new products ({size_mb:.1f} MB CSV) over "
            f"{h.catalog.products:,}: {figures['import_rows_per_s']:,.0f} rows/s (baseline "
            f"{figures['baseline_import_rows_per_s']:,.0f}), upload answered in "
            f"{answered_s:.1f} s; export back {export_s:.1f} s ({export_mb:.1f} MB, "
            f"{figures['export_rows_per_s']:,.0f} rows/s) against COPY {base_export_s:.1f} s "
            f"(ratio {export_ratio or 0:.2f}); every row came back equal"
        ),
        details={
            "rows": rows,
            "import_s": round(import_s, 3),
            "baseline_import_s": round(base_import_s, 3),
            "import_ratio": round(ratio, 2) if ratio is not None else None,
            "upload_answered_s": round(answered_s, 3),
            "export_s": round(export_s, 3),
            "baseline_export_s": round(base_export_s, 3),
            "export_ratio": round(export_ratio, 2) if export_ratio is not None else None,
            "baseline_batch": BASELINE_BATCH,
            "upload_bytes": len(ours_file),
            **{k: round(v, 1) for k, v in figures.items()},
        },
    )
