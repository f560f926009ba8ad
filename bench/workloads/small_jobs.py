"""W9: many small background jobs (50 products each) from 20 tenants, against bare arq.

Ours: one client per tenant, all at once, each sending its share of
`setProductStatus(selection: {ids: [50 ids]}, status: ..., options: {mode: BACKGROUND})`
mutations one after another to the API, while one worker process runs the jobs. jobs/s =
jobs / (last jobs.finished_at - first jobs.created_at); pickup = started_at - created_at.

Baseline: the same number of no-op jobs through arq alone on the same Redis (a queue of its
own), enqueued first and then run by one arq worker in burst mode with the service worker's
max_jobs and poll_delay (Settings defaults): jobs / run time. The note also gives arq tuned
(max_jobs=50, poll_delay=0.01).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

from bench.catalog import BenchError, Tenant, log
from bench.clients import graphql, queued_job
from bench.harness import Harness
from bench.results import Result, percentile
from bulkops.config import Settings
from bulkops.domain import TERMINAL_STATUSES

BARE_QUEUE = "bench:bare-arq"
DONE_TIMEOUT = 1800.0
MUTATION = """mutation($ids: [ID!]!, $status: ProductStatus!) {
  setProductStatus(selection: {ids: $ids}, status: $status, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }"""


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def bare_arq(redis_url: str, jobs: int, *, max_jobs: int, poll_delay: float) -> float:
    """No-op jobs through arq alone: enqueue them all, then time one burst worker; jobs/s."""
    settings = RedisSettings.from_dsn(redis_url)
    pool = await create_pool(settings)
    try:
        await pool.delete(BARE_QUEUE)
        for _ in range(jobs):
            await pool.enqueue_job("noop", _queue_name=BARE_QUEUE)
    finally:
        await pool.aclose()
    worker = Worker(
        functions=[func(noop, name="noop")],
        queue_name=BARE_QUEUE,
        redis_settings=settings,
        burst=True,
        max_jobs=max_jobs,
        poll_delay=poll_delay,
        handle_signals=False,
        keep_result=60,
    )
    try:
        started = time.perf_counter()
        await worker.main()
        elapsed = time.perf_counter() - started
    finally:
        await worker.close()
    if worker.jobs_complete != jobs:
        raise BenchError(f"bare arq ran {worker.jobs_complete} of {jobs} jobs")
    return jobs / elapsed


async def _tenant_ids(h: Harness) -> dict[str, list[int]]:
    conn = await h.owner()
    try:
        rows = await conn.fetch(
            """SELECT tenant_id::text AS t, array_agg(id ORDER BY id) AS ids FROM products
               WHERE tenant_id = ANY($1::uuid[]) GROUP BY 1""",
            [t.id for t in h.catalog.small_tenants],
        )
    finally:
        await conn.close()
    return {r["t"]: r["ids"] for r in rows}


async def submit(base_url: str, tenant: Tenant, ids: list[int], jobs: int, size: int) -> list[str]:
    """One tenant's client: `jobs` mutations one after another; their job ids."""
    blocks = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)]
    job_ids = []
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        for n in range(jobs):
            block = [str(i) for i in blocks[n % len(blocks)]]
            status = ("ARCHIVED", "ACTIVE")[(n // len(blocks)) % 2]
            data = await graphql(client, tenant.token, MUTATION, {"ids": block, "status": status})
            job_ids.append(queued_job(data, "setProductStatus"))
    return job_ids


async def _wait_done(h: Harness, tenants: list[str], total: int) -> None:
    conn = await h.owner()
    try:
        deadline = time.monotonic() + DONE_TIMEOUT
        while True:
            done = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE tenant_id = ANY($1::uuid[]) AND status = ANY($2)",
                tenants,
                list(TERMINAL_STATUSES),
            )
            if done >= total:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"W9: {done} of {total} jobs ended in time")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _job_stats(h: Harness, tenants: list[str]) -> dict[str, Any]:
    conn = await h.owner()
    try:
        row = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE status <> 'SUCCEEDED') AS failed,
                      extract(epoch FROM max(finished_at) - min(created_at)) AS span,
                      array_agg(extract(epoch FROM started_at - created_at) * 1000) AS pickups
               FROM jobs WHERE tenant_id = ANY($1::uuid[])""",
            tenants,
        )
    finally:
        await conn.close()
    return dict(row)


async def w9(h: Harness) -> Result:
    await h.shared()
    plan = h.plan
    tenants = list(h.catalog.small_tenants)
    per_tenant = plan.small_jobs // len(tenants)
    total = per_tenant * len(tenants)
    ids = await _tenant_ids(h)
    async with h.running("W9") as stack:
        started = time.perf_counter()
        submitted = await asyncio.gather(
            *(submit(stack.base_url, t, ids[t.id], per_tenant, plan.job_items) for t in tenants)
        )
        submit_s = time.perf_counter() - started
        log(f"W9: {total:,} jobs submitted in {submit_s:.1f} s")
        await _wait_done(h, [t.id for t in tenants], total)
        stack.check_alive()
    stats = await _job_stats(h, [t.id for t in tenants])
    if stats["failed"] or sum(len(j) for j in submitted) != total:
        raise BenchError(f"W9: {stats['failed']} jobs did not succeed")
    ours = total / float(stats["span"])
    pickups = [float(p) for p in stats["pickups"]]
    settings = Settings()
    base = await bare_arq(
        h.catalog.redis_url,
        total,
        max_jobs=settings.worker_max_jobs,
        poll_delay=settings.worker_poll_delay,
    )
    tuned = await bare_arq(h.catalog.redis_url, total, max_jobs=50, poll_delay=0.01)
    p95 = percentile(pickups, 95)
    log(f"W9: ours {ours:.0f} jobs/s, bare arq {base:.0f} jobs/s (tuned {tuned:.0f})")
    return Result(
        ours=ours,
        baseline=base,
        unit="jobs/s",
        target="ratio >= 0.5 (half bare arq's no-op jobs/s)",
        met=ours / base >= 0.5,
        note=(
            f"{total:,} jobs of {plan.job_items} products from {len(tenants)} tenants, 1 worker "
            f"(max_jobs {settings.worker_max_jobs}); submitted at {total / submit_s:.0f}/s; "
            f"pickup p50 {percentile(pickups, 50):.0f} ms, p95 {p95:.0f} ms; bare arq at "
            f"max_jobs 50, poll_delay 0.01: {tuned:.0f} jobs/s"
        ),
        details={
            "jobs": total,
            "submit_s": round(submit_s, 2),
            "span_s": round(float(stats["span"]), 2),
            "pickup_ms": {
                "p50": round(percentile(pickups, 50), 1),
                "p95": round(p95, 1),
                "p99": round(percentile(pickups, 99), 1),
                "max": round(max(pickups), 1),
            },
            "bare_arq_jobs_per_s": round(base, 1),
            "bare_arq_tuned_jobs_per_s": round(tuned, 1),
        },
    )
