"""W9: many small background jobs (50 products each) from 20 tenants, against arq jobs that
run the same UPDATE.

Every small tenant's products are cut in blocks of `plan.job_items`; its n-th job sets
block n mod blocks to ARCHIVED or ACTIVE, the status alternating every round over the
blocks, so every job changes all of its products. One such sequence per tenant runs on
through every phase below, ours and the baseline alike: both do the same writes.

1. **Accept** (the API alone, no worker): one client per tenant, all at once, each sending
   its share of `setProductStatus(selection: {ids: [50 ids]}, status: ...,
   options: {mode: BACKGROUND})` one after another. submissions/s = jobs / the time to send
   them all. With `--profile` the API's py-spy samples of this phase are in
   `logs/W9-run<n>-api.pyspy.txt` (`python -m bench.profile FILE`).
2. **Drain** (ours): then one `bulkops worker` process starts on that full queue.
   jobs/s = jobs / (last `finished_at` - first `started_at`) of those jobs. This is the
   figure measured against the baseline: each job is claimed, leased, applied in its
   transaction with the job row, counted, published and ended.
3. **Baseline**: as many arq jobs, the next jobs of the same sequences, each running
   SetProductStatus's own statement (copied below: keep it in step) on its 50 ids in one
   transaction with the tenant set, as `bulkops.db.pool.tenant_transaction` sets it, on a
   pool made by `bulkops.db.pool.create_pool` as the application role (row-level security
   applies); enqueued first on a queue of their own, then run by one arq worker in this
   process with the service worker's max_jobs, poll_delay, pool size, job_timeout and
   keep_result. jobs/s = jobs / (last job's end - first job's start). No API, no job row,
   no lease, no progress. Bare no-op arq jobs with the same settings are given beside it.
4. **Sustained load**: a fresh API and worker; for `plan.load_seconds`, submissions at
   each of `plan.load_levels` (fractions of the drain rate just measured), paced (open loop:
   each is sent on schedule whatever the earlier answers take, at most IN_FLIGHT at once)
   and spread over the tenants in turn, each tenant sending through a client of its own,
   then until every one of them ended. When IN_FLIGHT answers are awaited the next
   submission waits for one, so `sent` below `asked` means the API answered no faster.
   pickup = `started_at - created_at` of each job (`created_at` is the accepting
   transaction's start).

Phases 1-3 run `plan.small_job_runs` times; ours and the baseline are their medians. Each
run also gives the CPU time per job (psutil) of the processes at work in each phase (the
API and the clients; the worker; the baseline's worker, this process) and of PostgreSQL
(the postmaster and every process it started, ended ones included): on two shared cores,
where the time goes matters more than the wall clock.
ratio = ours / baseline: higher is better (target >= 0.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import psutil
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

from bench.catalog import BenchError, Tenant, log
from bench.clients import graphql, queued_job
from bench.harness import Harness
from bench.profile import summarize
from bench.results import Result, median, percentile
from bench.stack import Stack
from bulkops.config import Settings
from bulkops.db import pool as db_pool
from bulkops.domain import TERMINAL_STATUSES

BASELINE_QUEUE = "bench:w9-baseline"
NOOP_QUEUE = "bench:w9-noop"
DONE_TIMEOUT = 1800.0
# Sustained load: submissions waiting for an answer at once, at most.
IN_FLIGHT = 64
STATUSES = ("ARCHIVED", "ACTIVE")
MUTATION = """mutation($ids: [ID!]!, $status: ProductStatus!) {
  setProductStatus(selection: {ids: $ids}, status: $status, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }"""
# SetProductStatus.apply_batch's statement, as it is.
SET_STATUS = """WITH target AS (
                  SELECT id, status FROM products
                  WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                  FOR UPDATE),
                changed AS (
                  UPDATE products p SET status = $2, updated_at = now()
                  FROM target t WHERE p.id = t.id AND t.status <> $2
                  RETURNING p.id)
              SELECT ARRAY(SELECT id FROM target) AS found,
                     ARRAY(SELECT id FROM changed ORDER BY id) AS changed"""


class Blocks:
    """One tenant's jobs in order: the n-th job's ids and the status it sets."""

    def __init__(self, tenant: Tenant, ids: list[int], size: int) -> None:
        self.tenant = tenant
        self.blocks = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)]
        if not self.blocks:
            raise BenchError(f"W9: tenant {tenant.name} has fewer than {size} products")
        self.sent = 0

    def next(self) -> tuple[list[int], str]:
        n = self.sent
        self.sent += 1
        return self.blocks[n % len(self.blocks)], STATUSES[(n // len(self.blocks)) % 2]


async def _sequences(h: Harness) -> list[Blocks]:
    conn = await h.owner()
    try:
        rows = await conn.fetch(
            """SELECT tenant_id::text AS t, array_agg(id ORDER BY id) AS ids FROM products
               WHERE tenant_id = ANY($1::uuid[]) GROUP BY 1""",
            [t.id for t in h.catalog.small_tenants],
        )
    finally:
        await conn.close()
    ids = {r["t"]: r["ids"] for r in rows}
    return [Blocks(t, ids.get(t.id, []), h.plan.job_items) for t in h.catalog.small_tenants]


# --- ours -----------------------------------------------------------------------------


async def _send(client: httpx.AsyncClient, seq: Blocks) -> str:
    ids, status = seq.next()
    data = await graphql(
        client, seq.tenant.token, MUTATION, {"ids": [str(i) for i in ids], "status": status}
    )
    return queued_job(data, "setProductStatus")


async def _tenant_client(base_url: str, seq: Blocks, jobs: int) -> tuple[list[str], list[float]]:
    """One tenant's client: `jobs` mutations one after another; job ids and answer times."""
    job_ids, answered = [], []
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        for _ in range(jobs):
            sent = time.perf_counter()
            job_ids.append(await _send(client, seq))
            answered.append(time.perf_counter() - sent)
    return job_ids, answered


async def accept(stack: Stack, seqs: list[Blocks], per_tenant: int) -> dict[str, Any]:
    """Phase 1: every tenant's submissions at once, one after another each."""
    started = time.perf_counter()
    sent = await asyncio.gather(*(_tenant_client(stack.base_url, s, per_tenant) for s in seqs))
    seconds = time.perf_counter() - started
    job_ids = [j for ids, _ in sent for j in ids]
    answers = [a * 1000 for _, times in sent for a in times]
    return {
        "job_ids": job_ids,
        "seconds": seconds,
        "per_s": len(job_ids) / seconds,
        "answer_ms": _pcts(answers, 50, 95, 99),
    }


async def _wait_done(h: Harness, seqs: list[Blocks], total: int) -> None:
    """Until every job of these tenants (`total` of them so far) has ended."""
    conn = await h.owner()
    try:
        deadline = time.monotonic() + DONE_TIMEOUT
        while True:
            row = await conn.fetchrow(
                """SELECT count(*) AS jobs, count(*) FILTER (WHERE status = ANY($2)) AS ended
                   FROM jobs WHERE tenant_id = ANY($1::uuid[])""",
                [s.tenant.id for s in seqs],
                list(TERMINAL_STATUSES),
            )
            if row["jobs"] >= total and row["ended"] == row["jobs"]:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"W9: {row['ended']} of {total} jobs ended in time")
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _job_stats(h: Harness, job_ids: list[str]) -> dict[str, Any]:
    conn = await h.owner()
    try:
        row = await conn.fetchrow(
            """SELECT count(*) AS jobs, count(*) FILTER (WHERE status <> 'SUCCEEDED') AS failed,
                      sum(succeeded) AS changed,
                      extract(epoch FROM max(finished_at) - min(started_at)) AS ran,
                      array_agg(extract(epoch FROM started_at - created_at) * 1000) AS pickups
               FROM jobs WHERE id = ANY($1::uuid[])""",
            job_ids,
        )
    finally:
        await conn.close()
    if row["jobs"] != len(job_ids) or row["failed"]:
        raise BenchError(f"W9: {row['failed']} of {len(job_ids)} jobs did not succeed")
    return {
        "ran_s": float(row["ran"]),
        "changed": int(row["changed"]),
        "pickups": [float(p) for p in row["pickups"]],
    }


async def _paced(
    stack: Stack, seqs: list[Blocks], rate: float, seconds: float
) -> tuple[list[str], float, list[float]]:
    """Phase 4: `rate` submissions a second for `seconds`, over the tenants in turn; the job
    ids, the rate achieved and the answer times (ms). Each tenant sends through a client of
    its own, as each tenant's frontend would: one httpx client holding all IN_FLIGHT
    connections spent 3.6-5.4 ms of CPU per request against 1.6-2.6 ms for the same
    requests spread over clients, and on two shared cores that CPU came out of what the
    API had."""
    count = max(1, round(rate * seconds))
    slots = asyncio.Semaphore(IN_FLIGHT)
    answers: list[float] = []
    per_client = -(-IN_FLIGHT // len(seqs))
    # An idle connection is dropped before uvicorn's keep-alive timeout (5 s) closes it:
    # a request sent on a connection the server is closing at that moment fails.
    limits = httpx.Limits(
        max_connections=per_client, max_keepalive_connections=per_client, keepalive_expiry=2.0
    )

    async def one(client: httpx.AsyncClient, seq: Blocks) -> str:
        try:
            sent = time.perf_counter()
            job_id = await _send(client, seq)
            answers.append((time.perf_counter() - sent) * 1000)
            return job_id
        finally:
            slots.release()

    async with contextlib.AsyncExitStack() as clients:
        tenants = [
            (
                await clients.enter_async_context(
                    httpx.AsyncClient(base_url=stack.base_url, timeout=120, limits=limits)
                ),
                seq,
            )
            for seq in seqs
        ]
        tasks = []
        started = time.perf_counter()
        for n in range(count):
            wait = started + n / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await slots.acquire()
            tasks.append(asyncio.create_task(one(*tenants[n % len(tenants)])))
        # On schedule, the last one goes out (count - 1) / rate after the first.
        sent_s = time.perf_counter() - started + 1 / rate
        job_ids = list(await asyncio.gather(*tasks))
    return job_ids, count / sent_s, answers


async def sustained(
    h: Harness, seqs: list[Blocks], drain: float, submitted: int
) -> list[dict[str, Any]]:
    """Phase 4 at every load level, on an API and worker of their own."""
    levels: list[dict[str, Any]] = []
    async with h.running("W9-load") as stack:
        for level in h.plan.load_levels:
            rate = level * drain
            job_ids, achieved, answers = await _paced(stack, seqs, rate, h.plan.load_seconds)
            submitted += len(job_ids)
            await _wait_done(h, seqs, submitted)
            stack.check_alive()
            stats = await _job_stats(h, job_ids)
            pickups = stats["pickups"]
            levels.append(
                {
                    "level": level,
                    "rate": round(rate, 1),
                    "achieved": round(achieved, 1),
                    "jobs": len(job_ids),
                    "pickup_ms": _pcts(pickups, 50, 95, 99, 100),
                    "answer_ms": _pcts(answers, 50, 95),
                }
            )
            log(
                f"W9: {level:.0%} of the drain rate ({achieved:.0f}/s for "
                f"{h.plan.load_seconds:g} s): pickup p50 {percentile(pickups, 50):.0f} ms, "
                f"p95 {percentile(pickups, 95):.0f} ms"
            )
    return levels


# --- the baseline ---------------------------------------------------------------------


def _worker_options(settings: Settings) -> dict[str, Any]:
    """The service worker's arq settings (bulkops.tasks.worker.build_worker), in burst mode."""
    return {
        "burst": True,
        "handle_signals": False,
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": settings.worker_poll_delay,
        "job_timeout": max(300, int(settings.slice_seconds * 20)),
        "keep_result": 60,
    }


@dataclass
class Spans:
    """When each baseline job began and ended (perf_counter), and the products it changed."""

    first: float = float("inf")
    last: float = 0.0
    jobs: int = 0
    changed: int = 0
    found: int = 0

    def add(self, started: float, ended: float, found: int, changed: int) -> None:
        self.first = min(self.first, started)
        self.last = max(self.last, ended)
        self.jobs += 1
        self.found += found
        self.changed += changed


async def _enqueue(redis_url: str, queue: str, jobs: list[tuple[Any, ...]]) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        await pool.delete(queue)
        for name, *args in jobs:
            await pool.enqueue_job(name, *args, _queue_name=queue)
    finally:
        await pool.aclose()


async def fair_baseline(h: Harness, seqs: list[Blocks], per_tenant: int) -> dict[str, Any]:
    """Phase 3: arq jobs each running the same UPDATE with the tenant set; jobs/s."""
    settings = Settings()
    work = [("set_status", s.tenant.id, *s.next()) for _ in range(per_tenant) for s in seqs]
    await _enqueue(h.catalog.redis_url, BASELINE_QUEUE, work)
    spans = Spans()

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["pool"] = await db_pool.create_pool(
            h.catalog.work_url,
            role=settings.app_role,
            min_size=1,
            max_size=settings.worker_max_jobs + 1,
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "pool" in ctx:
            await ctx["pool"].close()

    async def set_status(ctx: dict[str, Any], tenant_id: str, ids: list[int], status: str) -> int:
        started = time.perf_counter()
        pool: asyncpg.Pool = ctx["pool"]
        async with db_pool.tenant_transaction(pool, tenant_id) as conn:
            row = await conn.fetchrow(SET_STATUS, ids, status)
        spans.add(started, time.perf_counter(), len(row["found"]), len(row["changed"]))
        return len(row["changed"])

    worker = Worker(
        functions=[func(set_status, name="set_status")],
        queue_name=BASELINE_QUEUE,
        redis_settings=RedisSettings.from_dsn(h.catalog.redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        **_worker_options(settings),
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    if spans.jobs != len(work) or worker.jobs_failed:
        raise BenchError(f"W9 baseline: {spans.jobs} of {len(work)} jobs ran")
    if spans.found != len(work) * h.plan.job_items:
        raise BenchError(f"W9 baseline: found {spans.found} products, not all of them")
    return {"per_s": len(work) / (spans.last - spans.first), "changed": spans.changed}


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def bare_arq(redis_url: str, jobs: int) -> float:
    """No-op jobs through arq alone, with the service worker's settings; jobs/s from the
    worker's start to its end."""
    await _enqueue(redis_url, NOOP_QUEUE, [("noop",)] * jobs)
    worker = Worker(
        functions=[func(noop, name="noop")],
        queue_name=NOOP_QUEUE,
        redis_settings=RedisSettings.from_dsn(redis_url),
        **_worker_options(Settings()),
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


# --- the workload ---------------------------------------------------------------------


def _pcts(values: list[float], *pcts: float) -> dict[str, float]:
    if not values:
        return {}
    return {(f"p{p:g}" if p < 100 else "max"): round(percentile(values, p), 1) for p in pcts}


def _cpu_s(h: Harness, **pids: int) -> dict[str, float]:
    """CPU seconds used so far by each named process and by PostgreSQL (the postmaster,
    its processes, and those it has reaped)."""
    used = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        used[name] = times.user + times.system
    try:
        postmaster = psutil.Process(
            int((h.catalog.data / "pg" / "postmaster.pid").read_text().split()[0])
        )
        reaped = postmaster.cpu_times()
        postgres = reaped.children_user + reaped.children_system
        for proc in [postmaster, *postmaster.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            postgres += times.user + times.system
    except (OSError, ValueError, psutil.Error):
        return used
    return {**used, "postgres": postgres}


def _cpu_ms_per_job(
    before: dict[str, float], after: dict[str, float], jobs: int
) -> dict[str, float]:
    return {k: round((after[k] - before[k]) * 1000 / jobs, 2) for k in before if k in after}


async def one_run(h: Harness, seqs: list[Blocks], run: int, submitted: int) -> dict[str, Any]:
    """Phases 1-3 once."""
    per_tenant = h.plan.small_jobs // len(seqs)
    async with h.running(f"W9-run{run}", workers=0) as stack:
        assert stack.api is not None
        cpu = _cpu_s(h, api=stack.api.pid, client=os.getpid())
        accepted = await accept(stack, seqs, per_tenant)
        total = len(accepted["job_ids"])
        accept_cpu = _cpu_ms_per_job(cpu, _cpu_s(h, api=stack.api.pid, client=os.getpid()), total)
        log(f"W9: {total:,} jobs accepted in {accepted['seconds']:.1f} s, no worker running")
        await stack.start_workers(1)
        cpu = _cpu_s(h, worker=stack.workers[0].pid)
        await _wait_done(h, seqs, submitted + total)
        drain_cpu = _cpu_ms_per_job(cpu, _cpu_s(h, worker=stack.workers[0].pid), total)
        stack.check_alive()
    if h.profile:
        for name in ("api", "worker1"):
            log(summarize(h.catalog.data / "logs" / f"W9-run{run}-{name}.pyspy.txt", 15))
    ours = await _job_stats(h, accepted["job_ids"])
    cpu = _cpu_s(h, worker=os.getpid())
    baseline = await fair_baseline(h, seqs, per_tenant)
    baseline_cpu = _cpu_ms_per_job(cpu, _cpu_s(h, worker=os.getpid()), total)
    drain = total / ours["ran_s"]
    log(
        f"W9: drained at {drain:.0f} jobs/s; arq with the same UPDATE {baseline['per_s']:.0f}; "
        f"CPU ms a job: accept {accept_cpu}, drain {drain_cpu}, baseline {baseline_cpu}"
    )
    return {
        "jobs": total,
        "accept_per_s": round(accepted["per_s"], 1),
        "accept_answer_ms": accepted["answer_ms"],
        "drain_per_s": round(drain, 1),
        "baseline_per_s": round(baseline["per_s"], 1),
        "changed_per_job": round(ours["changed"] / total, 1),
        "baseline_changed_per_job": round(baseline["changed"] / total, 1),
        # CPU ms per job: of the API, the clients (this process) and PostgreSQL while
        # accepting; of the worker and PostgreSQL while draining; of the baseline's worker
        # (this process) and PostgreSQL.
        "cpu_ms_per_job": {"accept": accept_cpu, "drain": drain_cpu, "baseline": baseline_cpu},
    }


async def w9(h: Harness) -> Result:
    await h.shared()
    plan = h.plan
    seqs = await _sequences(h)
    runs: list[dict[str, Any]] = []
    for run in range(1, plan.small_job_runs + 1):
        runs.append(await one_run(h, seqs, run, sum(r["jobs"] for r in runs)))
    ours = median(r["drain_per_s"] for r in runs)
    base = median(r["baseline_per_s"] for r in runs)
    accept_rate = median(r["accept_per_s"] for r in runs)
    total = runs[0]["jobs"]
    noop_rate = await bare_arq(h.catalog.redis_url, total)
    levels = await sustained(h, seqs, ours, sum(r["jobs"] for r in runs))
    settings = Settings()
    loads = "; ".join(
        f"{lv['level']:.0%} (asked {lv['rate']:.0f}/s, sent {lv['achieved']:.0f}/s): "
        f"{lv['pickup_ms']['p50']:.0f} / {lv['pickup_ms']['p95']:.0f} ms"
        for lv in levels
    )
    if any(lv["achieved"] < 0.95 * lv["rate"] for lv in levels):
        # The pacer sends on schedule until IN_FLIGHT answers are awaited.
        loads += (
            f" (where sent is below asked, {IN_FLIGHT} submissions were awaiting their "
            "answers: with the worker on the same cores the API answered no faster)"
        )
    return Result(
        ours=ours,
        baseline=base,
        unit="jobs/s",
        target="ratio >= 0.5 (jobs/s, higher is better)",
        met=ours / base >= 0.5,
        note=(
            f"{total:,} jobs of {plan.job_items} products from {len(seqs)} tenants, queued "
            f"through the API, then drained by 1 worker (max_jobs {settings.worker_max_jobs}) "
            f"against arq jobs running the same UPDATE with the tenant set; median of "
            f"{len(runs)}; API alone accepted {accept_rate:.0f} submissions/s; pickup p50 / p95 "
            f"under {plan.load_seconds:g} s of submissions at a share of the drain rate: "
            f"{loads}; bare no-op arq {noop_rate:,.0f} jobs/s"
        ),
        details={
            "runs": runs,
            "accept_per_s": accept_rate,
            "bare_noop_arq_per_s": round(noop_rate, 1),
            "load_seconds": plan.load_seconds,
            "load": levels,
        },
    )
