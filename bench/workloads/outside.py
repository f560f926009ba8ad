"""E1-E3: operations that call outside services, against local servers the benchmark
starts (no internet): an OpenAI-compatible provider and an image host.

Sizes below are the full plan's (the quick plan's are smaller, see bench/plan.py).

E1: enrichProducts over 2,000 products as one background job; the provider answers in
200 ms and allows 50 requests/s (past that it answers 429). Ours: items/s from the
mutation sent to the terminal state seen by a subscriber; the figure is that rate ÷ the
provider's limit (the physical limit: no client can do better for long). Beside it, the
hand-rolled pattern teams write (5 calls at once, then a 500 ms pause) on the same
provider, over a tenth of the items.

E2: tenant A's 20,000-item enrichment (the catalog's own products) and tenant B's 200-item
one on the same provider. Ours: B's time from its mutation to its terminal state while A's
job runs; baseline: B alone. A is cancelled once B has ended.

E3: fetchProductImages over 5,000 image URLs of a local host answering in 50 ms. Ours:
images/s, mutation sent to the terminal state; baseline: a bare httpx loop downloading the
same URLs with the same concurrency (no storage, no database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from bench.catalog import BenchError, Tenant, log
from bench.clients import graphql, mutation_sender, queued_job, timed_job, watch_job
from bench.harness import Harness
from bench.results import Result
from bench.stack import ROOT, Stack, free_port

JOB_TIMEOUT = 1800.0
PROVIDER_RPS = 50
PROVIDER_LATENCY_MS = 200
IMAGE_LATENCY_MS = 50
IMAGE_CONCURRENCY = 16
# Calls in flight per worker: the provider's latency times its rate, with room to spare.
LLM_CONCURRENCY = 16

ENRICH = """mutation($ids: [ID!]!) {
  enrichProducts(selection: {ids: $ids},
                 instructions: {prompt: "Describe {name} by {brand} in one sentence.",
                                target: "description", overwrite: true},
                 options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message field } } }"""
FETCH = """mutation($file: Upload!) {
  fetchProductImages(upload: $file, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message field } } }"""
CANCEL = "mutation($id: ID!) { cancelJob(id: $id) { __typename } }"
JOB = "query($id: ID!) { job(id: $id) { status processed failed usage { calls rateLimited } } }"


@contextlib.asynccontextmanager
async def local_server(module: str, *args: str) -> AsyncIterator[str]:
    """`python -m module --port N ...` until the block ends; its base URL."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before the timing)
        [sys.executable, "-m", module, "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{module} did not start")
            await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def provider_env(base_url: str) -> dict[str, str]:
    return {
        "BULKOPS_LLM_BASE_URL": f"{base_url}/v1",
        "BULKOPS_LLM_REQUESTS_PER_SECOND": str(PROVIDER_RPS),
        "BULKOPS_LLM_CONCURRENCY": str(LLM_CONCURRENCY),
    }


async def product_ids(h: Harness, tenant: Tenant, limit: int) -> list[int]:
    conn = await h.owner()
    try:
        rows = await conn.fetch(
            "SELECT id FROM products WHERE tenant_id = $1::uuid ORDER BY id LIMIT $2",
            tenant.id,
            limit,
        )
    finally:
        await conn.close()
    return [r["id"] for r in rows]


async def enrich_job(stack: Stack, tenant: Tenant, ids: list[int]) -> tuple[float, str]:
    timed = await timed_job(
        stack,
        tenant.token,
        mutation_sender(tenant.token, ENRICH, {"ids": [str(i) for i in ids]}, "enrichProducts"),
        timeout=JOB_TIMEOUT,
    )
    if timed.final["status"] != "SUCCEEDED":
        raise BenchError(f"enrichProducts ended {timed.final['status']}: {timed.final}")
    return timed.seconds, timed.job_id


async def hand_rolled(base_url: str, items: int) -> float:
    """The pattern teams write: 5 calls at once, then a 500 ms pause; items/s."""
    body = {"model": "m", "messages": [{"role": "user", "content": "Describe a product."}]}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        started = time.perf_counter()
        for _ in range(0, items, 5):
            answers = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body) for _ in range(5))
            )
            for answer in answers:
                if answer.status_code != 200:
                    raise BenchError(f"E1: the hand-rolled pattern got {answer.status_code}")
            await asyncio.sleep(0.5)
        return items / (time.perf_counter() - started)


async def e1(h: Harness) -> Result:
    await h.shared()
    tenant = h.catalog.tenant
    ids = await product_ids(h, tenant, h.plan.enrich_items)
    args = ("--rps", str(PROVIDER_RPS), "--latency-ms", str(PROVIDER_LATENCY_MS))
    async with local_server("tests.fake_llm", *args) as provider:
        async with h.running("E1", workers=1, env=provider_env(provider)) as stack:
            seconds, job_id = await enrich_job(stack, tenant, ids)
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
                usage = (await graphql(client, tenant.token, JOB, {"id": job_id}))["job"]
        rate = len(ids) / seconds
        log(f"E1: {len(ids)} products in {seconds:.1f} s = {rate:.1f}/s; usage {usage}")
        manual = await hand_rolled(provider, max(10, len(ids) // 10))
    return Result(
        ours=rate,
        baseline=float(PROVIDER_RPS),
        unit="items/s",
        target="ratio >= 0.9",
        met=rate / PROVIDER_RPS >= 0.9,
        note=(
            f"{len(ids):,} products, provider {PROVIDER_LATENCY_MS} ms per answer, "
            f"{PROVIDER_RPS} requests/s; baseline is the provider's limit; "
            f"hand-rolled (5 at once, 500 ms pause) {manual:.1f} items/s; "
            f"{usage['usage']['rateLimited']} answers were 429"
        ),
        details={"seconds": round(seconds, 2), "hand_rolled_per_s": round(manual, 2), **usage},
    )


async def _b_job(stack: Stack, tenant: Tenant, ids: list[int]) -> float:
    seconds, _ = await enrich_job(stack, tenant, ids)
    return seconds


async def _started_job(stack: Stack, tenant: Tenant, ids: list[int]) -> str:
    """A's job, queued and seen running with some items done."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=120) as client:
        send = mutation_sender(
            tenant.token, ENRICH, {"ids": [str(i) for i in ids]}, "enrichProducts"
        )
        job_id = await send(client)
        for _ in range(600):
            job = (await graphql(client, tenant.token, JOB, {"id": job_id}))["job"]
            if job["processed"] > 0:
                return job_id
            await asyncio.sleep(0.1)
    raise BenchError("E2: tenant A's job did not start")


async def e2(h: Harness) -> Result:
    await h.shared()
    a, b = h.catalog.tenant, h.catalog.small_tenants[0]
    a_ids = await product_ids(h, a, h.plan.tenant_a_items)
    b_ids = await product_ids(h, b, h.plan.tenant_b_items)
    args = ("--rps", str(PROVIDER_RPS), "--latency-ms", str(PROVIDER_LATENCY_MS))
    async with (
        local_server("tests.fake_llm", *args) as provider,
        h.running("E2", workers=1, env=provider_env(provider)) as stack,
    ):
        alone = await _b_job(stack, b, b_ids)
        a_job = await _started_job(stack, a, a_ids)
        try:
            shared = await _b_job(stack, b, b_ids)
        finally:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
                await graphql(client, a.token, CANCEL, {"id": a_job})
            await watch_job(stack.ws_url, a.token, a_job, timeout=120)
    log(f"E2: B alone {alone:.2f} s, B beside A {shared:.2f} s")
    return Result(
        ours=shared,
        baseline=alone,
        unit="s",
        target="ratio <= 2",
        met=shared / alone <= 2,
        note=(
            f"B: {len(b_ids)} products; A: {len(a_ids):,} products running on the same "
            f"provider ({PROVIDER_RPS} requests/s, {PROVIDER_LATENCY_MS} ms), cancelled after"
        ),
    )


def upload_sender(token: str, content: bytes) -> Callable[[httpx.AsyncClient], Awaitable[str]]:
    """fetchProductImages with its sources as an uploaded CSV file (a multipart request)."""

    async def send(client: httpx.AsyncClient) -> str:
        response = await client.post(
            "/graphql",
            data={
                "operations": json.dumps({"query": FETCH, "variables": {"file": None}}),
                "map": json.dumps({"0": ["variables.file"]}),
            },
            files={"0": ("sources.csv", content, "text/csv")},
            headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"},
        )
        return queued_job(response.json()["data"], "fetchProductImages")

    return send


async def bare_downloads(urls: list[str], concurrency: int) -> float:
    """The same URLs through one httpx client, `concurrency` at once; images/s."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(url: str) -> None:
            async with gate:
                answer = await client.get(url)
                if answer.status_code != 200 or not answer.content:
                    raise BenchError(f"E3: the bare loop got {answer.status_code}")

        started = time.perf_counter()
        await asyncio.gather(*(one(u) for u in urls))
        return len(urls) / (time.perf_counter() - started)


async def _skus(h: Harness, tenant: Tenant, limit: int) -> list[str]:
    conn = await h.owner()
    try:
        rows = await conn.fetch(
            "SELECT sku FROM products WHERE tenant_id = $1::uuid ORDER BY id LIMIT $2",
            tenant.id,
            limit,
        )
    finally:
        await conn.close()
    return [r["sku"] for r in rows]


async def e3(h: Harness) -> Result:
    # Adds an image to some products; no workload after it minds.
    await h.shared()
    tenant = h.catalog.tenant
    skus = await _skus(h, tenant, h.plan.images)
    env = {
        "BULKOPS_ALLOW_PRIVATE_NETWORKS": "true",
        "BULKOPS_FETCH_REQUESTS_PER_SECOND_PER_HOST": "10000",
        "BULKOPS_FETCH_CONCURRENCY_PER_HOST": str(IMAGE_CONCURRENCY),
    }
    async with local_server(
        "tests.image_server", "--latency", str(IMAGE_LATENCY_MS / 1000)
    ) as host:
        urls = [f"{host}/img/{i}.png" for i in range(len(skus))]
        baseline = await bare_downloads(urls, IMAGE_CONCURRENCY)
        rows = "".join(f"{s},{u}\n" for s, u in zip(skus, urls, strict=True))
        content = f"sku,url\n{rows}".encode()
        async with h.running("E3", workers=1, env=env) as stack:
            timed = await timed_job(
                stack, tenant.token, upload_sender(tenant.token, content), timeout=JOB_TIMEOUT
            )
    final: dict[str, Any] = timed.final
    if final["status"] != "SUCCEEDED":
        raise BenchError(f"E3: fetchProductImages ended {final['status']}: {final}")
    ours = len(skus) / timed.seconds
    log(f"E3: {len(skus)} images, ours {ours:.1f}/s, bare httpx {baseline:.1f}/s")
    return Result(
        ours=ours,
        baseline=baseline,
        unit="images/s",
        target="ratio >= 0.8",
        met=ours / baseline >= 0.8,
        note=(
            f"{len(skus):,} images from one local host answering in {IMAGE_LATENCY_MS} ms, "
            f"{IMAGE_CONCURRENCY} at once; ours stores each file and its image row"
        ),
    )
