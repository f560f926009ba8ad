"""Delete N products by filter in the background, against its raw-SQL limit.

Ours: `deleteProducts(filter: {}, mode: BACKGROUND)` sent to a real API process, run by one
real worker process, timed from the mutation being sent to the terminal state seen by a
websocket subscriber.

Baseline: the same set-based deletes as raw SQL on one owner connection, 5,000 products per
transaction plus a progress-row update per batch; no API, no queue, no stored files.

Each run starts from a fresh copy of one seeded database (CREATE DATABASE ... TEMPLATE) and of
its stored files. Run: .venv/bin/python -m bench.delete_100k [--products 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import websockets
from redis.asyncio import Redis
from websockets.typing import Subprotocol

from bulkops.cli import create_token
from bulkops.config import Settings
from bulkops.constants import QUEUE_NAME, TERMINAL_STATUSES
from bulkops.db.migrate import apply_migrations
from bulkops.embedded import EmbeddedServers, ensure_servers
from bulkops.seed import print_progress, seed_products
from bulkops.services.storage import LocalStorage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".bench-data"
SEED_FILES = DATA / "files-seeded"
RUN_FILES = DATA / "files"
LOGS = DATA / "logs"
RESULTS = ROOT / "bench" / "results" / "delete_100k.json"
BIN = Path(sys.prefix) / "bin"

TENANT = "bench"
WORK_DB = "bulkops_bench"
SEEDED_DB = "bulkops_bench_seeded"
BATCH = 5000
STARTUP_TIMEOUT = 60.0
JOB_TIMEOUT = 1800.0

MUTATION = """mutation {
  deleteProducts(selection: {filter: {}}, options: {mode: BACKGROUND}) {
    __typename
    ... on JobQueued { job { id } }
    ... on Rejected { code message }
  }
}"""
SUBSCRIPTION = "subscription($id: ID!) { job(id: $id) { status processed total version } }"

# The baseline: the statements of bulkops/operations/delete_products.py and of the runner
# (next ids by filter, job progress update), without queueing the stored files for removal.
NEXT_IDS_SQL = """SELECT p.id FROM products p
                  WHERE p.id > $1 AND p.tenant_id = current_tenant_id()
                  ORDER BY p.id LIMIT $2"""
DELETE_SQL = """WITH img AS (
                  DELETE FROM product_images
                  WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                  RETURNING 1),
                ds AS (
                  DELETE FROM dataset_products
                  WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                  RETURNING 1),
                idents AS (
                  DELETE FROM product_identifiers
                  WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                  RETURNING 1),
                gone AS (
                  DELETE FROM products
                  WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                  RETURNING id)
              SELECT (SELECT count(*) FROM gone) AS deleted,
                     (SELECT count(*) FROM img) AS images,
                     (SELECT count(*) FROM ds) AS memberships,
                     (SELECT count(*) FROM idents) AS identifiers"""
PROGRESS_SQL = """UPDATE jobs SET cursor = $2, processed = processed + $3,
                    succeeded = succeeded + $3, version = version + 1,
                    updated_at = clock_timestamp()
                  WHERE id = $1"""


class BenchError(RuntimeError):
    """The benchmark could not measure what it claims to measure."""


@dataclass(frozen=True)
class Env:
    """The servers and the seeded catalog every run starts from."""

    admin_url: str
    redis_url: str
    token: str
    tenant_id: str

    @property
    def work_url(self) -> str:
        return with_database(self.admin_url, WORK_DB)


@dataclass(frozen=True)
class OursRun:
    seconds: float
    mutation_s: float
    queue_wait_s: float
    worker_s: float
    updates_seen: int
    final_status: str
    processed: int
    files_left: int
    file_deletions_left: int


@dataclass(frozen=True)
class BaselineRun:
    seconds: float
    batches: int
    deleted: int


# --------------------------------------------------------------------------- setup


def with_database(url: str, name: str) -> str:
    """`url` with its path replaced by `/name` (the ?host= query is kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def fresh_data_dir() -> None:
    if DATA.exists():
        shutil.rmtree(DATA)
    LOGS.mkdir(parents=True)


async def recreate_database(admin_url: str, name: str, *, template: str | None = None) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        # Settle the WAL of the copy now, not during a measurement.
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def build_seeded_template(admin_url: str, redis_url: str, products: int) -> Env:
    """Migrate and seed `bulkops_bench` once, then keep it as the template of every run."""
    await recreate_database(admin_url, WORK_DB)
    work_url = with_database(admin_url, WORK_DB)
    conn = await asyncpg.connect(work_url)
    try:
        await apply_migrations(conn)
        started = time.perf_counter()
        await seed_products(conn, LocalStorage(SEED_FILES), TENANT, products, report=print_progress)
        log(f"seeded {products:,} products in {time.perf_counter() - started:.1f} s")
        # A settled catalog: statistics and visibility map, as a live one would have.
        await conn.execute("VACUUM ANALYZE")
        tenant_id = str(await conn.fetchval("SELECT id FROM tenants WHERE name = $1", TENANT))
    finally:
        await conn.close()
    settings = Settings(DATABASE_URL=work_url, REDIS_URL=redis_url, storage_dir=SEED_FILES)
    token = await create_token(settings, TENANT)
    await recreate_database(admin_url, SEEDED_DB, template=WORK_DB)
    return Env(admin_url=admin_url, redis_url=redis_url, token=token, tenant_id=tenant_id)


async def fresh_catalog(env: Env, *, with_files: bool) -> None:
    """`bulkops_bench` (and, if asked, the storage folder) as they were after seeding."""
    await recreate_database(env.admin_url, WORK_DB, template=SEEDED_DB)
    if RUN_FILES.exists():
        shutil.rmtree(RUN_FILES)
    if with_files:
        shutil.copytree(SEED_FILES, RUN_FILES)


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(env: Env) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": env.work_url,
        "REDIS_URL": env.redis_url,
        "BULKOPS_STORAGE_DIR": str(RUN_FILES),
        "BULKOPS_DATA_DIR": str(DATA),
    }


def start_process(
    args: list[str], env: dict[str, str], log_file: IO[bytes]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def check_alive(proc: subprocess.Popen[bytes], name: str, log_path: Path) -> None:
    if proc.poll() is not None:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise BenchError(f"{name} exited with {proc.returncode}; its log ends:\n{tail}")


async def wait_for_api(
    client: httpx.AsyncClient, proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        check_alive(proc, "the API", log_path)
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise BenchError("the API did not answer /healthz in time")


async def wait_for_worker(redis_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """arq writes its health-check key on its first poll, after its startup hook."""
    client = redis_client(redis_url)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            check_alive(proc, "the worker", log_path)
            if await client.exists(f"{QUEUE_NAME}:health-check"):
                return
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    raise BenchError("the worker did not start polling in time")


def redis_client(url: str) -> Redis:
    client: Redis = Redis.from_url(url)
    return client


async def flush_redis(redis_url: str) -> None:
    client = redis_client(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- ours


async def send_mutation(client: httpx.AsyncClient, token: str) -> str:
    response = await client.post(
        "/graphql", json={"query": MUTATION}, headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    result = (body.get("data") or {}).get("deleteProducts")
    if not result or result.get("__typename") != "JobQueued":
        raise BenchError(f"the mutation did not queue a job: {body}")
    return str(result["job"]["id"])


async def watch_until_terminal(ws_url: str, token: str, job_id: str) -> tuple[dict[str, Any], int]:
    """The job's terminal state as the `job` subscription delivers it, and how many
    states it delivered."""
    protocol = [Subprotocol("graphql-transport-ws")]
    async with websockets.connect(ws_url, subprotocols=protocol) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        ack = json.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise BenchError(f"the websocket was refused: {ack}")
        payload = {"query": SUBSCRIPTION, "variables": {"id": job_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        seen = 0
        async for raw in ws:
            message: dict[str, Any] = json.loads(raw)
            if message.get("type") != "next":
                raise BenchError(f"the subscription ended early: {message}")
            if message["payload"].get("errors"):
                raise BenchError(f"the subscription failed: {message['payload']['errors']}")
            state: dict[str, Any] = message["payload"]["data"]["job"]
            seen += 1
            if state["status"] in TERMINAL_STATUSES:
                return state, seen
    raise BenchError("the websocket closed before the job ended")


async def job_timings(env: Env, job_id: str) -> tuple[float, float]:
    """(queued -> started, started -> finished) as the job row recorded them."""
    conn = await asyncpg.connect(env.work_url)
    try:
        row = await conn.fetchrow(
            "SELECT created_at, started_at, finished_at FROM jobs WHERE id = $1", job_id
        )
    finally:
        await conn.close()
    if row is None or row["started_at"] is None or row["finished_at"] is None:
        raise BenchError(f"job {job_id} has no start or finish time")
    queued = (row["started_at"] - row["created_at"]).total_seconds()
    worked = (row["finished_at"] - row["started_at"]).total_seconds()
    return queued, worked


async def leftovers(env: Env) -> tuple[int, int]:
    """(products of the tenant, queued file deletions) left in the database."""
    conn = await asyncpg.connect(env.work_url)
    try:
        products = await conn.fetchval(
            "SELECT count(*) FROM products WHERE tenant_id = $1", env.tenant_id
        )
        queued = await conn.fetchval("SELECT count(*) FROM file_deletions")
    finally:
        await conn.close()
    return int(products), int(queued)


async def timed_delete(base_url: str, env: Env) -> tuple[float, float, str, dict[str, Any], int]:
    """Mutation sent -> terminal state seen; returns (seconds, mutation round trip, job id,
    final state, states seen)."""
    ws_url = base_url.replace("http://", "ws://") + "/graphql"
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        await client.get("/healthz")  # an open keep-alive connection, as a client would have
        started = time.perf_counter()
        job_id = await send_mutation(client, env.token)
        mutation_s = time.perf_counter() - started
        final, seen = await asyncio.wait_for(
            watch_until_terminal(ws_url, env.token, job_id), JOB_TIMEOUT
        )
        elapsed = time.perf_counter() - started
    return elapsed, mutation_s, job_id, final, seen


async def run_ours(env: Env, products: int, run_no: int) -> OursRun:
    await fresh_catalog(env, with_files=True)
    await flush_redis(env.redis_url)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api_log, worker_log = LOGS / f"api-{run_no}.log", LOGS / f"worker-{run_no}.log"
    with api_log.open("wb") as api_out, worker_log.open("wb") as worker_out:
        penv = service_env(env)
        api = start_process([str(BIN / "bulkops"), "serve", "--port", str(port)], penv, api_out)
        worker = start_process([str(BIN / "bulkops"), "worker"], penv, worker_out)
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=5) as probe:
                await wait_for_api(probe, api, api_log)
            await wait_for_worker(env.redis_url, worker, worker_log)
            elapsed, mutation_s, job_id, final, seen = await timed_delete(base_url, env)
        finally:
            stop_process(api)
            stop_process(worker)
    queue_wait_s, worker_s = await job_timings(env, job_id)
    left, queued_files = await leftovers(env)
    run = OursRun(
        seconds=elapsed,
        mutation_s=mutation_s,
        queue_wait_s=queue_wait_s,
        worker_s=worker_s,
        updates_seen=seen,
        final_status=str(final["status"]),
        processed=int(final["processed"]),
        files_left=count_files(RUN_FILES),
        file_deletions_left=queued_files,
    )
    if run.final_status != "SUCCEEDED" or run.processed != products or left != 0:
        raise BenchError(
            f"ours run {run_no}: status {run.final_status}, processed {run.processed} of "
            f"{products}, {left} products left"
        )
    return run


# --------------------------------------------------------------------------- baseline


async def start_progress_row(conn: asyncpg.Connection, total: int) -> str:
    job_id = await conn.fetchval(
        """INSERT INTO jobs (operation, status, selection, total, started_at)
           VALUES ('deleteProducts', 'RUNNING', '{"filter": {}}'::jsonb, $1, now())
           RETURNING id""",
        total,
    )
    return str(job_id)


async def delete_in_batches(conn: asyncpg.Connection, job_id: str) -> tuple[int, int]:
    """Every product of the tenant, 5,000 per transaction; returns (batches, deleted)."""
    cursor, batches, deleted = 0, 0, 0
    while True:
        async with conn.transaction():
            ids = [r["id"] for r in await conn.fetch(NEXT_IDS_SQL, cursor, BATCH)]
            if not ids:
                return batches, deleted
            row = await conn.fetchrow(DELETE_SQL, ids)
            cursor = ids[-1]
            await conn.execute(PROGRESS_SQL, job_id, cursor, row["deleted"])
        batches += 1
        deleted += int(row["deleted"])
        if len(ids) < BATCH:
            return batches, deleted


async def run_baseline(env: Env, products: int, run_no: int) -> BaselineRun:
    await fresh_catalog(env, with_files=False)
    conn = await asyncpg.connect(env.work_url)
    try:
        await conn.execute("SELECT set_config('bulkops.tenant_id', $1, false)", env.tenant_id)
        job_id = await start_progress_row(conn, products)
        started = time.perf_counter()
        batches, deleted = await delete_in_batches(conn, job_id)
        elapsed = time.perf_counter() - started
        left = await conn.fetchval("SELECT count(*) FROM products")
    finally:
        await conn.close()
    if deleted != products or left != 0:
        raise BenchError(f"baseline run {run_no}: deleted {deleted} of {products}, {left} left")
    return BaselineRun(seconds=elapsed, batches=batches, deleted=deleted)


# --------------------------------------------------------------------------- files


def time_raw_unlink(root: Path) -> float:
    """os.unlink of every file under `root` (listed beforehand); seconds."""
    paths = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]
    started = time.perf_counter()
    for path in paths:
        os.unlink(path)
    return time.perf_counter() - started


def time_storage_unlink(root: Path) -> float:
    """The service's LocalStorage.delete_many (key -> resolved, checked path) on every file."""
    storage = LocalStorage(root)
    keys = [
        os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
    ]
    started = time.perf_counter()
    removed = storage.delete_many(keys)
    elapsed = time.perf_counter() - started
    if removed != len(keys):
        raise BenchError(f"LocalStorage removed {removed} of {len(keys)} files")
    return elapsed


def measure_unlink(timer: Any) -> float:
    scratch = DATA / "unlink-scratch"
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(SEED_FILES, scratch)
    try:
        seconds: float = timer(scratch)
    finally:
        shutil.rmtree(scratch)
    return seconds


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def rounded(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in fields.items()}


def summarize(
    products: int, ours: list[OursRun], baseline: list[BaselineRun], unlink: tuple[float, float]
) -> dict[str, Any]:
    median_ours = statistics.median(r.seconds for r in ours)
    median_base = statistics.median(r.seconds for r in baseline)
    return {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "products": products,
        "ours_s": [round(r.seconds, 3) for r in ours],
        "baseline_s": [round(r.seconds, 3) for r in baseline],
        "median_ours_s": round(median_ours, 3),
        "median_baseline_s": round(median_base, 3),
        "ratio": round(median_ours / median_base, 2),
        "file_unlink_s": round(unlink[0], 3),
        "file_unlink_localstorage_s": round(unlink[1], 3),
        "ours_runs": [rounded(asdict(r)) for r in ours],
        "baseline_runs": [rounded(asdict(r)) for r in baseline],
    }


def print_table(summary: dict[str, Any], ours: list[OursRun]) -> None:
    n = summary["products"]
    print(f"\ndelete {n:,} products by filter; {len(ours)} run(s)")
    print(f"{'run':<8}{'ours (API+worker+ws)':>22}{'baseline (raw SQL)':>22}")
    for i, (o, b) in enumerate(zip(summary["ours_s"], summary["baseline_s"], strict=True), 1):
        print(f"{i:<8}{o:>20.3f} s{b:>20.3f} s")
    mo, mb = summary["median_ours_s"], summary["median_baseline_s"]
    print(f"{'median':<8}{mo:>20.3f} s{mb:>20.3f} s")
    print(f"{'items/s':<8}{n / mo:>22,.0f}{n / mb:>22,.0f}")
    print(f"ratio ours/baseline: {summary['ratio']:.2f}x")
    print(
        f"unlinking {n:,} stored files: os.unlink {summary['file_unlink_s']:.3f} s, "
        f"LocalStorage.delete_many {summary['file_unlink_localstorage_s']:.3f} s "
        "(not in the baseline)"
    )
    print("ours, per run: mutation round trip / queued->started / started->finished (job row)")
    for i, r in enumerate(ours, 1):
        print(
            f"  {i}: {r.mutation_s:.3f} s / {r.queue_wait_s:.3f} s / {r.worker_s:.3f} s; "
            f"{r.updates_seen} states seen; files left {r.files_left}; "
            f"file_deletions left {r.file_deletions_left}"
        )


def write_results(summary: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    log(f"wrote {RESULTS.relative_to(ROOT)}")


# --------------------------------------------------------------------------- main


async def measure(servers: EmbeddedServers, products: int, runs: int) -> dict[str, Any]:
    assert servers.database_url and servers.redis_url
    env = await build_seeded_template(servers.database_url, servers.redis_url, products)
    ours: list[OursRun] = []
    baseline: list[BaselineRun] = []
    for run_no in range(1, runs + 1):
        ours.append(await run_ours(env, products, run_no))
        log(f"run {run_no}: ours {ours[-1].seconds:.3f} s")
        baseline.append(await run_baseline(env, products, run_no))
        log(f"run {run_no}: baseline {baseline[-1].seconds:.3f} s")
    if RUN_FILES.exists():
        shutil.rmtree(RUN_FILES)
    unlink = (measure_unlink(time_raw_unlink), measure_unlink(time_storage_unlink))
    summary = summarize(products, ours, baseline, unlink)
    print_table(summary, ours)
    return summary


def cleanup_data() -> None:
    """Drop the bulky parts of the data folder; the service logs stay for reading."""
    for path in (DATA / "pg", SEED_FILES, RUN_FILES):
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.delete_100k", description=__doc__)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep-data", action="store_true", help="keep .bench-data/ whole")
    args = parser.parse_args(argv)
    if args.products < 1 or args.runs < 1:
        parser.error("--products and --runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    fresh_data_dir()
    servers = ensure_servers(None, None, DATA, persist=False)
    try:
        summary = asyncio.run(measure(servers, args.products, args.runs))
    finally:
        servers.stop()
        if not args.keep_data:
            cleanup_data()
    write_results(summary)


if __name__ == "__main__":
    main()
