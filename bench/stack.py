"""The service as a user runs it: `bulkops serve` and `bulkops worker` processes against the
work database (bench/clients.py talks to them)."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
from redis.asyncio import Redis

from bench.catalog import BenchError, Catalog
from bulkops.constants import QUEUE_NAME

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.prefix) / "bin"
STARTUP_TIMEOUT = 60.0
HEALTH_KEY = f"{QUEUE_NAME}:health-check"
LOG_GRACE = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_open_files_limit() -> None:
    """W8 holds a thousand websockets: let this process and its children open enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def redis_client(url: str) -> Redis:
    client: Redis = Redis.from_url(url)
    return client


class Stack:
    """One API process and any number of worker processes; `stop()` ends them all."""

    def __init__(
        self,
        catalog: Catalog,
        label: str,
        *,
        env: dict[str, str] | None = None,
        profile: bool = False,
    ) -> None:
        self.catalog = catalog
        self.label = label
        self.port = free_port()
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        # py-spy samplers of every process (`--profile`): collapsed stacks in the logs.
        self.profile = profile
        self._samplers: list[subprocess.Popen[bytes]] = []
        self._env = {
            **os.environ,
            "DATABASE_URL": catalog.work_url,
            "REDIS_URL": catalog.redis_url,
            # A local folder: the file workloads count the files left on disk.
            "BULKOPS_STORAGE_URL": catalog.run_files.resolve().as_uri(),
            "BULKOPS_DATA_DIR": str(catalog.data),
            # W6 and W8 send hundreds of requests of one tenant a second (a thousand
            # subscribers at once): limits that high keep the limiter's cost in the figures
            # without refusing any of them.
            "BULKOPS_RATE_LIMIT_BURST": "1000000",
            "BULKOPS_RATE_LIMIT_PER_SECOND": "1000000",
            **(env or {}),
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def _log_path(self, name: str) -> Path:
        return self.catalog.data / "logs" / f"{self.label}-{name}.log"

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        path = self._log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = path.open("wb")
        self._logs.append(out)
        proc = subprocess.Popen(
            [str(BIN / "bulkops"), *args],
            env=self._env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        if self.profile:
            sampler = [str(BIN / "py-spy"), "record", "--pid", str(proc.pid), "--format", "raw"]
            stacks = path.with_suffix(".pyspy.txt")
            self._samplers.append(
                subprocess.Popen(
                    [*sampler, "--nonblocking", "--output", str(stacks)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        return proc

    def _check(self, proc: subprocess.Popen[bytes], name: str) -> None:
        if proc.poll() is not None:
            tail = self._log_path(name).read_text(errors="replace")[-3000:]
            raise BenchError(f"{self.label}: {name} exited with {proc.returncode}:\n{tail}")

    async def _wait_api(self) -> None:
        assert self.api is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as probe:
            while time.monotonic() < deadline:
                self._check(self.api, "api")
                try:
                    if (await probe.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise BenchError(f"{self.label}: the API did not answer /healthz in time")

    def _spawn_workers(self, count: int) -> list[int]:
        first = len(self.workers)
        for n in range(first + 1, first + count + 1):
            self.workers.append(self._spawn(["worker"], f"worker{n}"))
        return list(range(first + 1, first + count + 1))

    async def _wait_workers(self, numbers: list[int]) -> None:
        """Until one new worker has polled (arq writes its health-check key on its first
        poll) and every one has started (its startup hook logs "worker ... started on HOST",
        then it polls at once); past LOG_GRACE after the first poll the log is not waited
        for."""
        redis = redis_client(self.catalog.redis_url)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            polled_at: float | None = None
            waiting = set(numbers)
            while True:
                for n in list(waiting):
                    self._check(self.workers[n - 1], f"worker{n}")
                    # The worker's own start-up line (its heartbeat begins).
                    if b" started on " in self._log_path(f"worker{n}").read_bytes():
                        waiting.discard(n)
                if polled_at is None and await redis.exists(HEALTH_KEY):
                    polled_at = time.monotonic()
                if polled_at is not None and (
                    not waiting or time.monotonic() - polled_at > LOG_GRACE
                ):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.label}: workers {sorted(waiting)} did not start")
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()
        # The startup hook opens a small pool: a moment to let the last ones poll too.
        await asyncio.sleep(0.2)

    async def start_workers(self, count: int = 1) -> None:
        redis = redis_client(self.catalog.redis_url)
        try:
            await redis.delete(HEALTH_KEY)
        finally:
            await redis.aclose()
        await self._wait_workers(self._spawn_workers(count))

    async def start(self, *, workers: int = 1) -> Stack:
        """The API and `workers` workers, started together; returns once all are up."""
        redis = redis_client(self.catalog.redis_url)
        try:
            await redis.delete(HEALTH_KEY)
        finally:
            await redis.aclose()
        self.api = self._spawn(["serve", "--port", str(self.port)], "api")
        numbers = self._spawn_workers(workers)
        waits = [self._wait_api()] + ([self._wait_workers(numbers)] if numbers else [])
        await asyncio.gather(*waits)
        return self

    def check_alive(self) -> None:
        if self.api is not None:
            self._check(self.api, "api")
        for i, proc in enumerate(self.workers, 1):
            self._check(proc, f"worker{i}")

    def stop(self) -> None:
        procs = [p for p in (self.api, *self.workers) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for sampler in self._samplers:
            # py-spy writes its samples when the process it samples exits.
            try:
                sampler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sampler.kill()
        for out in self._logs:
            out.close()
        self.api, self.workers, self._logs, self._samplers = None, [], [], []


async def flush_redis(url: str) -> None:
    client = redis_client(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
