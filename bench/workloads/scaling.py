"""W10: W1 with 1, 2 and 4 worker processes (the quick plan: 1 and 2).

Each point is W1's run (a fresh catalog, one API process, the mutation sent -> the terminal
state seen) with that many `bulkops worker` processes; without the stored files, which
would cost a minute per run to write and remove here (the purge tasks still run and clear
their queue, finding no file to unlink), so its one-worker point runs a little faster than
W1. A job
runs one slice at a time whatever the number of workers (its lease), so the same run is also
made with W1's products split into four jobs sent at once, timed until the last of them
ends: that curve shows what more workers do for a queue of jobs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.catalog import BenchError, log
from bench.clients import graphql, queued_job, watch_job
from bench.harness import Harness
from bench.results import Result, median
from bench.workloads.bulk import DELETE_CASE, DELETE_MUTATION, JOB_TIMEOUT, run_ours

SPLIT = 4


async def split_run(h: Harness, workers: int, label: str) -> float:
    """W1's products as SPLIT jobs sent at once; seconds until the last one ends."""
    await h.fresh()
    ids = [str(i) for i in h.catalog.delete_ids]
    # Four contiguous quarters: each job deletes its own range of products.
    size = -(-len(ids) // SPLIT)
    parts = [ids[i : i + size] for i in range(0, len(ids), size)]
    token = h.catalog.tenant.token
    async with (
        h.running(label, workers=workers) as stack,
        httpx.AsyncClient(base_url=stack.base_url, timeout=600) as client,
    ):

        async def one(part: list[str]) -> dict[str, Any]:
            data = await graphql(client, token, DELETE_MUTATION, {"ids": part})
            job_id = queued_job(data, "deleteProducts")
            seen = await watch_job(stack.ws_url, token, job_id, timeout=JOB_TIMEOUT)
            return seen[-1].state

        await client.get("/healthz")
        started = time.perf_counter()
        finals = await asyncio.gather(*(one(part) for part in parts))
        elapsed = time.perf_counter() - started
    if any(f["status"] != "SUCCEEDED" for f in finals):
        raise BenchError(f"{label}: {[f['status'] for f in finals]}")
    return elapsed


async def w10(h: Harness) -> Result:
    single: dict[int, list[float]] = {}
    split: dict[int, list[float]] = {}
    for workers in h.plan.worker_counts:
        for run in range(1, h.plan.scaling_runs + 1):
            label = f"W10-{workers}w-{run}"
            timed, _ = await run_ours(h, DELETE_CASE, label, workers=workers, files=False)
            single.setdefault(workers, []).append(timed.seconds)
            log(f"W10 {workers} workers: one job {single[workers][-1]:.2f} s")
            if h.plan.scaling_split:
                split.setdefault(workers, []).append(await split_run(h, workers, f"{label}-split"))
                log(f"W10 {workers} workers: {SPLIT} jobs {split[workers][-1]:.2f} s")
    one = {w: median(v) for w, v in single.items()}
    many = {w: median(v) for w, v in split.items()}
    most = max(h.plan.worker_counts)
    curve = ", ".join(f"{w}: {s:.2f} s" for w, s in one.items())
    split_curve = ", ".join(f"{w}: {s:.2f} s" for w, s in many.items()) or "not run"
    n = len(h.catalog.delete_ids)
    return Result(
        ours=one[most],
        baseline=None,
        unit="s",
        target="reported (curve)",
        met=None,
        note=(
            f"W1 ({n:,} products) by worker processes, one job: {curve}; "
            f"as {SPLIT} jobs: {split_curve}; {h.plan.scaling_runs} run(s) per point"
        ),
        details={"one_job_s": single, "split_jobs_s": split},
    )
