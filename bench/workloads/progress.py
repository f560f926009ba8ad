"""W7 and W8: how fast a job's progress reaches websocket subscribers.

Latency of a state = the subscriber's wall-clock receive time minus the job's `updated_at`
for that version: `clock_timestamp()` of the UPDATE that made it, inside the batch's
transaction just before its commit (Postgres and the clients share this machine's clock).
The API does not expose `updatedAt`, so the harness reads it from the states the worker
publishes, on a Redis pattern subscription of its own. A subscription's first message is
the state read when it starts, not a published one: it is left out.

W7: one idle API process and worker; `plan.pickup_jobs` small background jobs one after
another (a subscriber each; pickup = jobs.started_at - jobs.created_at), then one job over
an eighth of the catalog (brand Zeta) whose progress states stream to one subscriber.

W8: `plan.subscribers` subscribers (in `plan.subscriber_processes` client processes) of one
job over another eighth (brand Acme), all subscribed while the job is still QUEUED (no
worker yet); then a worker starts. Every subscriber must see QUEUED, RUNNING and
SUCCEEDED, ending with the terminal state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.catalog import BenchError, log
from bench.clients import Seen, graphql, mutation_sender, queued_job, timed_job
from bench.harness import Harness
from bench.results import Result, percentile
from bench.stack import ROOT, redis_client
from bulkops.constants import job_channel

JOB_TIMEOUT = 900.0
READY_TIMEOUT = 300.0
SMALL = 50
STATUS_JOB = """mutation($ids: [ID!]!, $status: ProductStatus!) {
  setProductStatus(selection: {ids: $ids}, status: $status, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }"""
BRAND_JOB = """mutation($brand: String!, $status: ProductStatus!) {
  setProductStatus(selection: {filter: {brand: [$brand]}}, status: $status,
                   options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }"""


class Published:
    """Every state published on any job channel while it runs: (job id, version) ->
    updated_at as epoch seconds."""

    def __init__(self, redis_url: str) -> None:
        self._redis = redis_client(redis_url)
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self.updated: dict[tuple[str, int], float] = {}

    async def __aenter__(self) -> Published:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.psubscribe(job_channel("*"))
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "pmessage":
                continue
            state = json.loads(message["data"])
            stamp = datetime.fromisoformat(state["updated_at"]).timestamp()
            self.updated[(state["id"], int(state["version"]))] = stamp

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()
        await self._redis.aclose()

    def latencies(self, job_id: str, received: list[tuple[float, int]]) -> tuple[list[float], int]:
        """Milliseconds from commit to receipt of each (wall time, version) after the first,
        and how many of those were not published (read back by the subscription)."""
        out, unpublished = [], 0
        for wall, version in received[1:]:
            committed = self.updated.get((job_id, version))
            if committed is None:
                unpublished += 1
            else:
                out.append((wall - committed) * 1000)
        return out, unpublished


def _received(seen: list[Seen]) -> list[tuple[float, int]]:
    return [(s.wall, int(s.state["version"])) for s in seen]


async def _small_ids(h: Harness, count: int) -> list[int]:
    conn = await h.owner()
    try:
        rows = await conn.fetch(
            "SELECT id FROM products WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
            h.catalog.tenant.id,
            count,
        )
    finally:
        await conn.close()
    return [r["id"] for r in rows]


async def w7(h: Harness) -> Result:
    await h.shared()
    token = h.catalog.tenant.token
    jobs = h.plan.pickup_jobs
    ids = await _small_ids(h, SMALL * jobs)
    rng = random.Random(7)
    latencies: list[float] = []
    unpublished = 0
    job_ids: list[str] = []
    async with Published(h.catalog.redis_url) as published, h.running("W7") as stack:
        for n in range(jobs):
            # Arrivals at random moments of the worker's polling.
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            block = [str(i) for i in ids[n * SMALL : (n + 1) * SMALL]]
            variables = {"ids": block, "status": ("ARCHIVED", "ACTIVE")[n % 2]}
            send = mutation_sender(token, STATUS_JOB, variables, "setProductStatus")
            timed = await timed_job(stack, token, send, timeout=JOB_TIMEOUT)
            job_ids.append(timed.job_id)
            found, missed = published.latencies(timed.job_id, _received(timed.seen))
            latencies += found
            unpublished += missed
        small = len(latencies)
        variables = {"brand": "Zeta", "status": "ARCHIVED"}
        send = mutation_sender(token, BRAND_JOB, variables, "setProductStatus")
        stream = await timed_job(stack, token, send, timeout=JOB_TIMEOUT)
        found, missed = published.latencies(stream.job_id, _received(stream.seen))
        latencies += found
        unpublished += missed
    times = await h.job_times(job_ids)
    pickups = [t.pickup_s * 1000 for t in times.values()]
    if not latencies or len(pickups) != jobs:
        raise BenchError(f"W7: {len(latencies)} latencies, {len(pickups)} of {jobs} pickups")
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    pickup95 = percentile(pickups, 95)
    log(f"W7: p50 {p50:.1f} ms, p99 {p99:.1f} ms, pickup p95 {pickup95:.1f} ms")
    return Result(
        ours=p99,
        baseline=None,
        unit="ms",
        target="p99 <= 20 ms; pickup p95 <= 50 ms",
        met=p99 <= 20 and pickup95 <= 50,
        note=(
            f"commit -> subscriber p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies)} "
            f"states ({small} from {jobs} small jobs, the rest from one job of "
            f"{stream.final['processed']:,} products); pickup p50 "
            f"{percentile(pickups, 50):.0f} ms, p95 {pickup95:.0f} ms"
        ),
        details={
            "latency_ms": _summary(latencies),
            "pickup_ms": _summary(pickups),
            "unpublished_states": unpublished,
        },
    )


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


async def _wait_ready(proc: asyncio.subprocess.Process) -> float:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
    if not line.startswith(b"ready"):
        raise BenchError(f"W8: a client process did not get ready: {line!r}")
    return float(line.split()[1])


async def w8(h: Harness) -> Result:
    await h.shared()
    plan, token = h.plan, h.catalog.tenant.token
    outs = [
        h.catalog.data / "logs" / f"W8-clients{i}.json" for i in range(plan.subscriber_processes)
    ]
    share = plan.subscribers // plan.subscriber_processes
    counts = [share + (1 if i < plan.subscribers % len(outs) else 0) for i in range(len(outs))]
    async with Published(h.catalog.redis_url) as published, h.running("W8", workers=0) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as client:
            variables = {"brand": "Acme", "status": "DRAFT"}
            job_id = queued_job(
                await graphql(client, token, BRAND_JOB, variables), "setProductStatus"
            )
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.workloads.ws_clients",
                stack.ws_url,
                token,
                job_id,
                str(count),
                str(out),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            for count, out in zip(counts, outs, strict=True)
        ]
        try:
            connect_s = max(await asyncio.gather(*(_wait_ready(p) for p in procs)))
            log(f"W8: {plan.subscribers} subscribers ready in {connect_s:.1f} s; starting a worker")
            started = time.perf_counter()
            await stack.start_workers(1)
            codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), JOB_TIMEOUT)
            elapsed = time.perf_counter() - started
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        stack.check_alive()
        published_versions = {v for (j, v) in published.updated if j == job_id}
        if any(codes):
            raise BenchError(f"W8: client processes exited with {codes}")
        return _w8_result(h, job_id, outs, published, published_versions, connect_s, elapsed)


def _w8_result(
    h: Harness,
    job_id: str,
    outs: list[Path],
    published: Published,
    versions: set[int],
    connect_s: float,
    elapsed: float,
) -> Result:
    subscribers: list[list[list[Any]]] = []
    errors: list[str] = []
    for out in outs:
        data = json.loads(out.read_text())
        subscribers += data["subscribers"]
        errors += data["errors"]
    latencies: list[float] = []
    complete = every_version = 0
    for seen in subscribers:
        statuses = [s[2] for s in seen]
        if statuses[0] == "QUEUED" and "RUNNING" in statuses and statuses[-1] == "SUCCEEDED":
            complete += 1
        got = {s[1] for s in seen[1:]}
        every_version += versions <= got | {seen[0][1]}
        found, _ = published.latencies(job_id, [(s[0], s[1]) for s in seen])
        latencies += found
    n = h.plan.subscribers
    if not latencies:
        raise BenchError(f"W8: no state delivered; errors: {errors[:3]}")
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    all_ok = complete == n and not errors
    log(f"W8: {complete}/{n} complete, p99 {p99:.0f} ms")
    return Result(
        ours=p99,
        baseline=None,
        unit="ms",
        target="all get every status and the terminal; p99 <= 250 ms",
        met=all_ok and p99 <= 250,
        note=(
            f"{n:,} subscribers in {len(outs)} client processes, subscribed in {connect_s:.1f} s; "
            f"{complete:,}/{n:,} saw QUEUED, RUNNING and SUCCEEDED; {every_version:,} got every "
            f"one of the {len(versions)} published states; delivery p50 {p50:.0f} ms, "
            f"p99 {p99:.0f} ms, max {max(latencies):.0f} ms; job took {elapsed:.1f} s"
        ),
        details={
            "latency_ms": _summary(latencies),
            "complete": complete,
            "every_version": every_version,
            "published_versions": len(versions),
            "errors": errors[:10],
            "messages_per_subscriber": _summary([float(len(s)) for s in subscribers]),
        },
    )
