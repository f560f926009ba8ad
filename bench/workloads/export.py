"""W5: the whole catalog as CSV over the streaming endpoint, against `COPY ... TO STDOUT`.

Ours: `GET /export/products.csv` (no filter) read as raw bytes by an httpx client: first
and last byte timed from the request. The API process's RSS is sampled every 10 ms
(psutil) during the download; the figure is its peak over its RSS just before.

Baseline: the same COPY (bulkops.db.export.export_query, with the same `SET LOCAL`) to
STDOUT over asyncpg into a sink that only counts bytes, as `bulkops_app` with the tenant
set, as the API does. One untimed COPY first, so that both read a warm cache.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import psutil

from bench.catalog import BenchError, connect_app, log
from bench.harness import Harness
from bench.results import Result, median
from bulkops.db.export import export_query

SAMPLE_SECONDS = 0.01
MB = 1024 * 1024


@dataclass(frozen=True)
class Transfer:
    first_byte_s: float
    last_byte_s: float
    size: int
    rss_growth: int = 0


class PeakRss:
    """The highest RSS of a process while the block runs, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.before = self._proc.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(SAMPLE_SECONDS)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


async def download(base_url: str, token: str, pid: int) -> Transfer:
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        await client.get("/healthz")
        headers = {"Authorization": f"Bearer {token}"}
        first, size = 0.0, 0
        with PeakRss(pid) as rss:
            started = time.perf_counter()
            async with client.stream("GET", "/export/products.csv", headers=headers) as response:
                if response.status_code != 200:
                    raise BenchError(f"the export answered {response.status_code}")
                async for chunk in response.aiter_raw():
                    if not size:
                        first = time.perf_counter() - started
                    size += len(chunk)
            last = time.perf_counter() - started
    return Transfer(first, last, size, rss.peak - rss.before)


async def copy_out(h: Harness) -> Transfer:
    query, args = export_query(None, "csv")
    conn = await connect_app(h.catalog.work_url)
    size, first = 0, 0.0
    started = time.perf_counter()

    async def sink(chunk: bytes) -> None:
        nonlocal size, first
        if not size:
            first = time.perf_counter() - started
        size += len(chunk)

    try:
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('bulkops.tenant_id', $1, true)", h.catalog.tenant.id
            )
            await conn.execute("SET LOCAL enable_bitmapscan = off")
            await conn.copy_from_query(query, *args, output=sink, format="csv", header=True)
        last = time.perf_counter() - started
    finally:
        await conn.close()
    return Transfer(first, last, size)


async def w5(h: Harness) -> Result:
    await h.shared()
    await copy_out(h)
    ours: list[Transfer] = []
    base: list[Transfer] = []
    async with h.running("W5", workers=0) as stack:
        assert stack.api is not None
        for run in range(1, h.plan.runs + 1):
            ours.append(await download(stack.base_url, h.catalog.tenant.token, stack.api.pid))
            base.append(await copy_out(h))
            if ours[-1].size != base[-1].size:
                raise BenchError(f"W5: the export has {ours[-1].size} bytes, COPY {base[-1].size}")
            mine, theirs = ours[-1].last_byte_s, base[-1].last_byte_s
            log(f"W5 run {run}: ours {mine:.2f} s, COPY {theirs:.2f} s")
    ours_s, base_s = median(t.last_byte_s for t in ours), median(t.last_byte_s for t in base)
    growth = max(t.rss_growth for t in ours) / MB
    size = ours[0].size / MB
    return Result(
        ours=ours_s,
        baseline=base_s,
        unit="s",
        target="ratio <= 2 (half COPY's throughput); RSS growth < 100 MB",
        met=ours_s / base_s <= 2 and growth < 100,
        note=(
            f"{h.catalog.products:,} products, {size:.0f} MB; median of {len(ours)}; "
            f"first byte {median(t.first_byte_s for t in ours) * 1000:.0f} ms "
            f"(COPY {median(t.first_byte_s for t in base) * 1000:.0f} ms); "
            f"{size / ours_s:.0f} vs {size / base_s:.0f} MB/s; API peak RSS growth {growth:.1f} MB"
        ),
        details={
            "ours_last_byte_s": [round(t.last_byte_s, 3) for t in ours],
            "ours_first_byte_s": [round(t.first_byte_s, 4) for t in ours],
            "baseline_last_byte_s": [round(t.last_byte_s, 3) for t in base],
            "baseline_first_byte_s": [round(t.first_byte_s, 4) for t in base],
            "rss_growth_mb": [round(t.rss_growth / MB, 1) for t in ours],
            "bytes": ours[0].size,
        },
    )
