"""Two API processes and two workers, each in a working folder of its own, sharing only
Postgres, Redis and the S3 store: a job submitted through one API runs on either worker,
its progress reaches a subscriber on the other API, and the export file (written batch by
batch by whichever worker) downloads through that other API."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.support import Tenant, make_products, start_bulkops

PRODUCTS = 3000
TERMINAL = ("SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED")
EXPORT = """mutation {
  exportProducts(options: {mode: BACKGROUND}) { ... on JobQueued { job { id } } } }"""
WATCH = "subscription($id: ID!) { job(id: $id) { status version processed } }"
RESULT = "query($id: ID!) { job(id: $id) { status resultFile { url rows bytes } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Machines:
    """`bulkops` processes as if each ran on a machine of its own: its own folder (working
    directory and data folder), nothing shared but the servers' URLs."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> Path:
        folder = self.root / name
        folder.mkdir()
        env = {
            "BULKOPS_DATA_DIR": str(folder),
            # The same on every API process, as docs/operations.md asks.
            "BULKOPS_SIGNING_KEY": "no-shared-disk-test-key",
            "BULKOPS_BATCH_SIZE": "500",
            # A slice per batch: each batch is queued again, for either worker to take.
            "BULKOPS_SLICE_SECONDS": "0",
            "BULKOPS_WORKER_POLL_DELAY": "0.05",
        }
        process = start_bulkops(self.settings, folder / "process.log", *args, cwd=folder, **env)
        self.started.append((process, folder))
        return folder

    def api(self, name: str) -> str:
        port = free_port()
        self.start(name, "serve", "--port", str(port))
        return f"http://127.0.0.1:{port}"

    def logs(self) -> str:
        return "\n".join(
            f"--- {folder.name}\n{(folder / 'process.log').read_text()[-2000:]}"
            for _, folder in self.started
        )

    def stop(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


async def wait_until_up(base: str, machines: Machines) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} did not start:\n{machines.logs()}")


async def follow(base: str, token: str, job_id: str, seen: list[dict[str, Any]]) -> None:
    url = base.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        await ws.recv()
        payload = {"query": WATCH, "variables": {"id": job_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "next":
                seen.append(message["payload"]["data"]["job"])
                if seen[-1]["status"] in TERMINAL:
                    return
            elif message["type"] in ("complete", "error"):
                return


def stored_locally(root: Path) -> list[Path]:
    """Export or image files under the processes' own folders."""
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and ("exports" in p.parts or p.suffix in (".csv", ".jsonl", ".svg"))
    ]


@pytest.mark.timeout(180)
async def test_a_job_runs_and_its_file_downloads_across_machines_with_no_shared_disk(
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    assert storage.url.startswith("s3://")
    await make_products(owner, storage, tenant, PRODUCTS, with_images=False)
    machines = Machines(tmp_path, settings)
    try:
        api_1, api_2 = machines.api("api-1"), machines.api("api-2")
        machines.start("worker-1", "worker")
        machines.start("worker-2", "worker")
        await asyncio.gather(wait_until_up(api_1, machines), wait_until_up(api_2, machines))
        headers = {"Authorization": f"Bearer {tenant.token}"}

        async with httpx.AsyncClient(base_url=api_1, headers=headers) as one:
            answer = (await one.post("/graphql", json={"query": EXPORT})).json()
        job_id = answer["data"]["exportProducts"]["job"]["id"]
        seen: list[dict[str, Any]] = []
        await asyncio.wait_for(follow(api_2, tenant.token, job_id, seen), 120)

        assert seen[-1]["status"] == "SUCCEEDED", machines.logs()
        assert seen[-1]["processed"] == PRODUCTS
        versions = [s["version"] for s in seen]
        assert versions == sorted(versions)
        async with httpx.AsyncClient(base_url=api_2, headers=headers) as two:
            query = {"query": RESULT, "variables": {"id": job_id}}
            file = (await two.post("/graphql", json=query)).json()["data"]["job"]["resultFile"]
            assert file["url"].startswith(api_2)
            response = await two.get(file["url"].removeprefix(api_2), headers={})
        assert response.status_code == 200, response.text
        assert len(response.content) == file["bytes"]
        lines = response.content.decode().splitlines()
        assert (len(lines), file["rows"]) == (PRODUCTS + 1, PRODUCTS)
        assert len({line.split(",")[0] for line in lines[1:]}) == PRODUCTS
        # Nothing was written to any process's own folder.
        assert stored_locally(tmp_path) == []
    finally:
        machines.stop()
