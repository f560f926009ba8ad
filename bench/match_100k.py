"""Match N uploaded rows against a catalog of M products, against the raw SQL doing the
same lookups. A by-hand measurement (W4 in BENCHMARKS.md), not part of `make bench`.

Ours: `matchProducts(upload: <CSV>, options: {mode: BACKGROUND})` sent to the real app
(uvicorn, in this process); a worker (arq, burst mode, in this process) runs the job. Times:
upload sent -> JobQueued answer, and -> the job's terminal state; and the job's own rows/s
(startedAt -> finishedAt).

Baseline: the same rules as plain set-based SQL on one owner connection (so no row-level
security), over the same staged rows, 500 rows per transaction (the operation's batch
size): for each rule one INSERT ... SELECT into a results table, over the rows of the batch
still without a result (the same joins and indexes as bulkops/db/matching.py and the
functions of migration 0005), then the candidates of the rows left. No API, queue,
progress or Python between the rules. Each statement's time is summed, to show which rules
cost.

The rows: 25% barcodes, 25% SKUs, 25% names with their brands (case and spacing changed),
20% names with a typo (same brand), 5% names that match nothing. Everything runs in a
scratch embedded PostgreSQL and Valkey under --data (default .bench-data/match-100k).

Run: .venv/bin/python -m bench.match_100k [--products 100000] [--rows 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import random
import shutil
import socket
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import uvicorn

from bulkops.config import Settings
from bulkops.db.migrate import apply_migrations
from bulkops.db.tenants import ensure_tenant, insert_token
from bulkops.dev.embedded import ensure_servers
from bulkops.dev.seed import print_progress, seed_products
from bulkops.services.auth import hash_token, new_token
from bulkops.storage import Storage
from bulkops.tasks.worker import build_worker
from bulkops.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
DB = "bulkops_match_bench"
TENANT = "bench"
BATCH = 500
THRESHOLD = 0.6
FLOOR = 0.3

UPLOAD = """mutation($file: Upload!) {
  matchProducts(upload: $file, options: {mode: BACKGROUND}) {
    __typename
    ... on JobQueued { job { id total } }
    ... on Rejected { code message }
  }
}"""
JOB = """query($id: ID!) {
  job(id: $id) { status total processed succeeded skipped failed startedAt finishedAt result }
}"""

_IN_BATCH = "r.input_id = $1 AND r.row_number = ANY($2::int[])"
# The rows of the batch that no earlier rule matched: each rule looks only at those, as the
# service does (it passes the row numbers still unmatched).
_PENDING = f"""WITH pending AS MATERIALIZED (
                 SELECT r.* FROM match_rows r
                 WHERE {_IN_BATCH} AND r.error_code IS NULL
                   AND NOT EXISTS (SELECT 1 FROM bench_results b
                                   WHERE b.input_id = r.input_id
                                     AND b.row_number = r.row_number))"""
_INSERT = """INSERT INTO bench_results (input_id, row_number, tenant_id, status, product_id,
                                         matched_by, score)"""
BASELINE: list[tuple[str, str]] = [
    (
        "invalid",
        f"""INSERT INTO bench_results (input_id, row_number, tenant_id, status)
            SELECT r.input_id, r.row_number, r.tenant_id, 'INVALID' FROM match_rows r
            WHERE {_IN_BATCH} AND r.error_code IS NOT NULL""",
    ),
    (
        "BARCODE",
        f"""{_PENDING}
            {_INSERT}
            SELECT DISTINCT ON (r.row_number) r.input_id, r.row_number, r.tenant_id,
                   'MATCHED', hit.id, 'BARCODE', 1
            FROM pending r
            CROSS JOIN LATERAL unnest(r.codes) WITH ORDINALITY AS c(code, n)
            JOIN LATERAL (
              SELECT p.id FROM products p
              WHERE p.tenant_id = current_tenant_id() AND p.barcode = c.code
              UNION
              SELECT i.product_id FROM product_identifiers i
              WHERE i.tenant_id = current_tenant_id()
                AND i.kind IN ('GTIN', 'EAN', 'UPC') AND i.value = c.code) hit ON true
            ORDER BY r.row_number, c.n, hit.id""",
    ),
    (
        "IDENTIFIER",
        f"""{_PENDING}
            {_INSERT}
            SELECT DISTINCT ON (r.row_number) r.input_id, r.row_number, r.tenant_id,
                   'MATCHED', i.product_id, 'IDENTIFIER', 1
            FROM pending r
            CROSS JOIN LATERAL unnest(r.identifier_kinds, r.identifier_values)
              WITH ORDINALITY AS x(kind, value, n)
            JOIN product_identifiers i
              ON i.tenant_id = current_tenant_id() AND i.kind = x.kind AND i.value = x.value
            ORDER BY r.row_number, x.n, i.product_id""",
    ),
    (
        "SKU",
        f"""{_PENDING}
            {_INSERT}
            SELECT r.input_id, r.row_number, r.tenant_id, 'MATCHED', p.id, 'SKU', 1
            FROM pending r
            JOIN products p ON p.tenant_id = current_tenant_id() AND p.sku = r.sku""",
    ),
    (
        "NAME_BRAND",
        f"""{_PENDING}
            {_INSERT}
            SELECT DISTINCT ON (r.row_number) r.input_id, r.row_number, r.tenant_id,
                   'MATCHED', p.id, 'NAME_BRAND', 1
            FROM pending r
            JOIN products p
              ON p.tenant_id = r.tenant_id
             AND match_norm(p.brand) = r.brand_key AND match_norm(p.name) = r.name_key
            WHERE r.name_key <> ''
            ORDER BY r.row_number, p.id""",
    ),
    (
        "FUZZY_NAME",
        f"""{_PENDING}
            {_INSERT}
            SELECT r.input_id, r.row_number, r.tenant_id, 'MATCHED', hit.id, 'FUZZY_NAME',
                   hit.score
            FROM pending r
            CROSS JOIN LATERAL (
              SELECT p.id, similarity(p.name, r.name) AS score
              FROM products p
              WHERE p.tenant_id = r.tenant_id
                AND p.name % r.name AND match_norm(p.brand) = r.brand_key
              ORDER BY score DESC, p.id LIMIT 1) hit
            WHERE r.name_key <> '' AND r.brand_key <> '' AND hit.score >= {THRESHOLD}::real""",
    ),
    (
        "candidates",
        f"""{_PENDING}
            INSERT INTO bench_results (input_id, row_number, tenant_id, status, candidates)
            SELECT r.input_id, r.row_number, r.tenant_id, 'UNMATCHED',
                   COALESCE((
                     SELECT jsonb_agg(jsonb_build_object('id', c.id, 'score', c.score)
                                      ORDER BY c.score DESC, c.id)
                     FROM (SELECT p.id, similarity(p.name, r.name) AS score
                           FROM products p
                           WHERE r.name_key <> '' AND p.tenant_id = r.tenant_id
                             AND p.name % r.name
                             AND (r.brand_key = '' OR match_norm(p.brand) = r.brand_key)
                           ORDER BY score DESC, p.id LIMIT 3) c), '[]')
            FROM pending r""",
    ),
]


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def log(message: str) -> None:
    print(message, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def prepare(admin_url: str, storage: Storage, products: int) -> tuple[str, str]:
    """A migrated, seeded scratch database; returns the tenant's id and a token."""
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()
    conn = await asyncpg.connect(with_database(admin_url, DB))
    try:
        await apply_migrations(conn)
        started = time.perf_counter()
        await seed_products(conn, storage, TENANT, products, report=print_progress)
        log(f"seeded {products:,} products in {time.perf_counter() - started:.1f} s")
        await conn.execute("VACUUM ANALYZE")
        tenant_id = str(await ensure_tenant(conn, TENANT))
        token = new_token()
        await insert_token(conn, tenant_id, hash_token(token))
        await conn.execute(
            "CREATE TABLE bench_results (LIKE match_results INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
    finally:
        await conn.close()
    return tenant_id, token


def _typo(name: str, rng: random.Random) -> str:
    words = name.split(" ")
    word = words[0]
    at = rng.randrange(1, len(word))
    words[0] = word[:at] + word[at + 1 :]
    return " ".join(words)


async def build_rows(url: str, count: int, seed: int) -> bytes:
    """The CSV to upload: a mix of rules over random products of the catalog."""
    conn = await asyncpg.connect(url)
    try:
        catalog = await conn.fetch("SELECT sku, barcode, name, brand FROM products ORDER BY id")
    finally:
        await conn.close()
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["barcode", "sku", "name", "brand", "ref"])
    for i in range(count):
        p = catalog[rng.randrange(len(catalog))]
        kind = i % 20
        if kind < 5:
            writer.writerow([p["barcode"], "", "", "", i])
        elif kind < 10:
            writer.writerow(["", p["sku"], "", "", i])
        elif kind < 15:
            name = p["name"].upper().replace(" ", "  ") if i % 2 else p["name"].lower()
            writer.writerow(["", "", f" {name} ", p["brand"].lower(), i])
        elif kind < 19:
            writer.writerow(["", "", _typo(p["name"], rng), p["brand"], i])
        else:
            writer.writerow(["", "", f"Mystery Item {i}", p["brand"], i])
    return out.getvalue().encode()


async def run_ours(settings: Settings, token: str, content: bytes) -> dict[str, Any]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
            headers = {"Authorization": f"Bearer {token}"}
            operations = {"query": UPLOAD, "variables": {"file": None}}
            sent = time.perf_counter()
            response = await http.post(
                "/graphql",
                data={
                    "operations": json.dumps(operations),
                    "map": json.dumps({"0": ["variables.file"]}),
                },
                files={"0": ("rows.csv", content, "text/csv")},
                headers={**headers, "Apollo-Require-Preflight": "true"},
            )
            answered = time.perf_counter() - sent
            result = response.json()["data"]["matchProducts"]
            assert result["__typename"] == "JobQueued", result
            job_id = result["job"]["id"]
            worker = build_worker(settings, burst=True, handle_signals=False, poll_delay=0.01)
            try:
                await worker.main()
            finally:
                await worker.close()
            done = time.perf_counter() - sent
            body = await http.post(
                "/graphql", json={"query": JOB, "variables": {"id": job_id}}, headers=headers
            )
            job = body.json()["data"]["job"]
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
    started = _ts(job["startedAt"])
    finished = _ts(job["finishedAt"])
    return {
        "job_id": job_id,
        "status": job["status"],
        "rows": job["total"],
        "accepted_s": answered,
        "total_s": done,
        "job_s": finished - started,
        "result": job["result"],
    }


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


async def run_baseline(url: str, tenant_id: str, job_id: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        input_id = await conn.fetchval("SELECT params->>'input_id' FROM jobs WHERE id = $1", job_id)
        await conn.execute("TRUNCATE bench_results")
        spent = dict.fromkeys([name for name, _ in BASELINE], 0.0)
        after, rows, batches = 0, 0, 0
        started = time.perf_counter()
        while True:
            async with conn.transaction():
                await conn.execute("SELECT set_config('bulkops.tenant_id', $1, true)", tenant_id)
                batch = [
                    r["row_number"]
                    for r in await conn.fetch(
                        """SELECT row_number FROM match_rows
                           WHERE input_id = $1 AND row_number > $2
                           ORDER BY row_number LIMIT $3""",
                        input_id,
                        after,
                        BATCH,
                    )
                ]
                if not batch:
                    break
                for name, sql in BASELINE:
                    t = time.perf_counter()
                    if name == "FUZZY_NAME":
                        await conn.execute(
                            "SELECT set_config('pg_trgm.similarity_threshold', $1, true)",
                            str(THRESHOLD),
                        )
                    elif name == "candidates":
                        await conn.execute(
                            "SELECT set_config('pg_trgm.similarity_threshold', $1, true)",
                            str(FLOOR),
                        )
                    await conn.execute(sql, input_id, batch)
                    spent[name] += time.perf_counter() - t
            after, rows, batches = batch[-1], rows + len(batch), batches + 1
        seconds = time.perf_counter() - started
        counts = dict(
            await conn.fetch(
                "SELECT COALESCE(matched_by, status), count(*) FROM bench_results GROUP BY 1"
            )
        )
        ours = dict(
            await conn.fetch(
                """SELECT COALESCE(matched_by, status), count(*) FROM match_results
                   WHERE input_id = $1 GROUP BY 1""",
                input_id,
            )
        )
    finally:
        await conn.close()
    return {
        "seconds": seconds,
        "rows": rows,
        "batches": batches,
        "spent": spent,
        "counts": counts,
        "same_counts": counts == ours,
        "ours_counts": ours,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT / ".bench-data" / "match-100k")
    args = parser.parse_args()
    if args.data.exists():
        shutil.rmtree(args.data)
    files = (args.data / "files").resolve().as_uri()
    servers = ensure_servers(None, None, args.data, persist=False, storage_url=files)
    try:
        assert servers.database_url and servers.redis_url
        storage = Storage.from_url(files)
        tenant_id, token = await prepare(servers.database_url, storage, args.products)
        url = with_database(servers.database_url, DB)
        settings = Settings(
            DATABASE_URL=url,
            REDIS_URL=servers.redis_url,
            storage_url=files,
            data_dir=args.data,
            publish_interval=0.2,
        )
        content = await build_rows(url, args.rows, seed=4)
        log(f"{args.rows:,} rows, {len(content) / 1e6:.1f} MB of CSV")
        runs = []
        for n in range(args.runs):
            ours = await run_ours(settings, token, content)
            base = await run_baseline(url, tenant_id, ours["job_id"])
            runs.append((ours, base))
            log(
                f"run {n + 1}: ours {ours['total_s']:.2f} s from the upload "
                f"(accepted in {ours['accepted_s']:.2f} s, job {ours['job_s']:.2f} s, "
                f"{ours['rows'] / ours['job_s']:,.0f} rows/s, {ours['status']}); "
                f"raw SQL {base['seconds']:.2f} s ({base['rows'] / base['seconds']:,.0f} rows/s)"
                f"; job / raw {ours['job_s'] / base['seconds']:.2f}; same counts: "
                f"{base['same_counts']}"
            )
            log(
                "    raw SQL by statement: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in base["spent"].items())
            )
            log(f"    counts: {base['ours_counts']}")
        job_s = statistics.median(o["job_s"] for o, _ in runs)
        total_s = statistics.median(o["total_s"] for o, _ in runs)
        accepted_s = statistics.median(o["accepted_s"] for o, _ in runs)
        raw_s = statistics.median(b["seconds"] for _, b in runs)
        log(
            f"median of {len(runs)}: upload->terminal {total_s:.2f} s, "
            f"accepted {accepted_s:.2f} s, "
            f"job {job_s:.2f} s ({args.rows / job_s:,.0f} rows/s), raw SQL {raw_s:.2f} s "
            f"({args.rows / raw_s:,.0f} rows/s); job / raw = {job_s / raw_s:.2f}, "
            f"upload->terminal / raw = {total_s / raw_s:.2f}"
        )
    finally:
        servers.stop()


if __name__ == "__main__":
    asyncio.run(main())
