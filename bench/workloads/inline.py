"""W6: inline mutations of 50 products: latency at 1 client, throughput at 32 clients.

Each request is `setProductStatus(selection: {ids: [50 ids]}, status: ...)` in the default
mode (50 is below the inline threshold, so it runs inline), flipping its products between
ARCHIVED and ACTIVE so that every request changes 50 rows. Each client is an httpx client
on a keep-alive connection with products of its own (no lock waits between clients); a
request is timed from being sent to its response read.

No baseline (BENCHMARKS.md reports W6 absolute). For scale the note gives the same UPDATE
alone, one transaction on one `bulkops_app` connection.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from bench.catalog import BenchError, connect_app, log
from bench.clients import graphql
from bench.harness import Harness
from bench.results import Result, median, percentile
from bench.workloads.raw_sql import SET_STATUS, SET_TENANT

SIZE = 50
WARMUP = 10
# Untimed requests of each loaded client before its timed ones: its connection is open.
LOADED_WARMUP = 2
MUTATION = """mutation($ids: [ID!]!, $status: ProductStatus!) {
  setProductStatus(selection: {ids: $ids}, status: $status) {
    __typename ... on SetProductStatusSummary { succeeded skipped failed }
    ... on Rejected { code message } } }"""
STATUSES = ("ARCHIVED", "ACTIVE")


async def client_run(
    base_url: str, token: str, ids: list[int], requests: int, *, warmup: int = WARMUP
) -> list[float]:
    """Seconds of each of `requests` mutations, after `warmup` untimed ones."""
    variables_ids = [str(i) for i in ids]
    times: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for n in range(warmup + requests):
            variables = {"ids": variables_ids, "status": STATUSES[n % 2]}
            started = time.perf_counter()
            data = await graphql(client, token, MUTATION, variables)
            elapsed = time.perf_counter() - started
            summary = data["setProductStatus"]
            if summary.get("__typename") != "SetProductStatusSummary" or summary["failed"]:
                raise BenchError(f"W6: unexpected answer {summary}")
            if n >= warmup:
                times.append(elapsed)
    return times


async def raw_update(h: Harness, ids: list[int], repeats: int) -> list[float]:
    conn = await connect_app(h.catalog.work_url)
    times: list[float] = []
    try:
        for n in range(WARMUP + repeats):
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(SET_TENANT, h.catalog.tenant.id)
                await conn.fetchrow(SET_STATUS, ids, STATUSES[n % 2])
            if n >= WARMUP:
                times.append(time.perf_counter() - started)
    finally:
        await conn.close()
    return times


async def w6(h: Harness) -> Result:
    await h.shared()
    plan, tenant = h.plan, h.catalog.tenant
    clients = plan.inline_clients
    conn = await h.owner()
    try:
        rows = await conn.fetch(
            "SELECT id FROM products WHERE tenant_id = $1 ORDER BY id LIMIT $2",
            tenant.id,
            SIZE * (clients + 1),
        )
    finally:
        await conn.close()
    ids = [r["id"] for r in rows]
    blocks = [ids[i * SIZE : (i + 1) * SIZE] for i in range(clients + 1)]
    async with h.running("W6", workers=0) as stack:
        single = await client_run(stack.base_url, tenant.token, blocks[0], plan.inline_requests)
        log(f"W6 1 client: p50 {median(single) * 1000:.1f} ms")
        started = time.perf_counter()
        many = await asyncio.gather(
            *(
                client_run(
                    stack.base_url,
                    tenant.token,
                    block,
                    plan.inline_requests_per_client,
                    warmup=LOADED_WARMUP,
                )
                for block in blocks[1:]
            )
        )
        wall = time.perf_counter() - started
    raw = await raw_update(h, blocks[0], plan.inline_requests)
    loaded = [t for times in many for t in times]
    # Each client's warm-up requests ran in the wall time too: counted in the throughput.
    per_second = clients * (LOADED_WARMUP + plan.inline_requests_per_client) / wall
    p50, p99 = percentile(single, 50) * 1000, percentile(single, 99) * 1000
    loaded50, loaded99 = percentile(loaded, 50) * 1000, percentile(loaded, 99) * 1000
    return Result(
        ours=p50,
        baseline=None,
        unit="ms",
        target="p50 <= 15 ms, p99 <= 50 ms (1 client)",
        met=p50 <= 15 and p99 <= 50,
        note=(
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(single)} requests at 1 client; "
            f"{clients} clients: {per_second:.0f} requests/s "
            f"({per_second * SIZE:,.0f} products/s), p50 {loaded50:.0f} ms, p99 {loaded99:.0f} ms; "
            f"the UPDATE alone: {percentile(raw, 50) * 1000:.1f} ms p50"
        ),
        details={
            "single_ms": {
                "p50": round(p50, 2),
                "p90": round(percentile(single, 90) * 1000, 2),
                "p99": round(p99, 2),
                "max": round(max(single) * 1000, 2),
                "n": len(single),
            },
            "clients": clients,
            "loaded_requests_per_s": round(per_second, 1),
            "loaded_ms": {
                "p50": round(loaded50, 2),
                "p99": round(loaded99, 2),
                "n": len(loaded),
            },
            "raw_update_ms": {
                "p50": round(percentile(raw, 50) * 1000, 2),
                "p99": round(percentile(raw, 99) * 1000, 2),
            },
        },
    )
