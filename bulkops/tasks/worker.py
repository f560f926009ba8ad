"""arq worker settings: `bulkops worker` runs these."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import asyncpg
from arq import Retry
from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func
from redis.exceptions import RedisError

from bulkops import logs, metrics
from bulkops.config import Settings
from bulkops.constants import QUEUE_NAME
from bulkops.db import job_runs
from bulkops.db import jobs as jobs_db
from bulkops.db.pool import create_pool, tenant_transaction
from bulkops.domain import JobStatus
from bulkops.models import ItemFailure
from bulkops.operations import REGISTRY, Registry
from bulkops.outside import OutsideCalls
from bulkops.services.container import Services
from bulkops.services.jobs import job_result
from bulkops.services.progress import publish_state
from bulkops.storage import Storage
from bulkops.tasks.heartbeat import Heartbeat, count_running
from bulkops.tasks.housekeeping import (
    cleanup_task,
    purge_files_task,
    reconcile_task,
    sweep_files_task,
)
from bulkops.tasks.runner import WorkerDeps, run_slice, slice_ready_at
from bulkops.tasks.schedules import schedule_cleanup_task, schedule_tick_task
from bulkops.tasks.webhooks import WebhookSender

log = logging.getLogger(__name__)

MAX_TRIES = 5
# What a slice that leaves the job unfinished returns (`run_slice`): logged at DEBUG only.
CONTINUING = frozenset({"SLICED", "HELD", "THROTTLED", "MISSING"})


async def run_job(ctx: dict[str, Any], job_id: str, tenant_id: str) -> str:
    """One slice of a bulk job. Unexpected errors are retried with backoff; after the
    last try the job ends FAILED with the error recorded."""
    deps: WorkerDeps = ctx["deps"]
    logs.bind(job_id=job_id, tenant_id=tenant_id)
    count_running(deps)
    try:
        outcome = await run_slice(
            deps, ctx["redis"], job_id, tenant_id, ready_at=slice_ready_at(ctx)
        )
    except Exception as exc:
        tries: int = ctx.get("job_try", 1)
        if tries < MAX_TRIES:
            log.warning("job %s slice failed (try %d), retrying", job_id, tries, exc_info=True)
            raise Retry(defer=min(2**tries, 30)) from exc
        log.exception("job %s failed after %d tries", job_id, tries)
        async with tenant_transaction(deps.pool, tenant_id) as conn:
            job = await job_runs.record_batch(
                conn,
                job_id,
                cursor=None,
                succeeded=0,
                failed=0,
                skipped=0,
                counters={},
                errors=[ItemFailure("INTERNAL", f"The job stopped on an error: {exc}")],
                step="failed",
            )
            job = await jobs_db.set_status(
                conn, job_id, JobStatus.FAILED, step="failed", result=job_result(job)
            )
        await publish_state(ctx["redis"], job)
        metrics.count_job_end(job.operation, job.status)
        return JobStatus.FAILED
    log.log(logging.DEBUG if outcome in CONTINUING else logging.INFO, "slice ended: %s", outcome)
    return outcome


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    handle_signals: bool = True,
    draining: asyncio.Event | None = None,
    operations: Registry = REGISTRY,
    **overrides: Any,
) -> Worker:
    """An arq worker running jobs of `operations` against the configured Postgres and
    Redis. Setting `draining` makes its running slices stop at their next batch boundary."""
    assert settings.database_url and settings.redis_url
    metrics.declare_operations(operations)

    async def startup(ctx: dict[str, Any]) -> None:
        assert settings.database_url
        pool = await create_pool(
            settings.database_url,
            role=settings.app_role,
            min_size=1,
            max_size=settings.worker_max_jobs + 1,
        )
        services = Services(
            pool=pool,
            redis=ctx["redis"],
            storage=Storage.from_settings(settings),
            settings=settings,
            outside=OutsideCalls(ctx["redis"], settings),
            operations=operations,
        )
        ctx["deps"] = WorkerDeps(services, draining=draining or asyncio.Event())
        ctx["heartbeat"] = Heartbeat(ctx["deps"], ctx["redis"])
        ctx["heartbeat"].start()
        ctx["webhooks"] = WebhookSender(services)
        ctx["webhooks"].start()

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "webhooks" in ctx:
            await ctx["webhooks"].stop()
        if "heartbeat" in ctx:
            await ctx["heartbeat"].stop()
        deps: WorkerDeps | None = ctx.get("deps")
        if deps is not None:
            await deps.services.outside.aclose()
            await deps.pool.close()

    every = max(1, settings.reconcile_every_seconds)
    options: dict[str, Any] = {
        "functions": [
            func(run_job, name="run_job", max_tries=MAX_TRIES),
            func(purge_files_task, name="purge_files", max_tries=3, timeout=3600),
        ],
        "cron_jobs": [
            cron(
                reconcile_task,
                name="reconcile",
                second=set(range(0, 60, every)),
                run_at_startup=True,
                timeout=60,
            ),
            cron(cleanup_task, name="cleanup", minute={17}, second={0}, timeout=600),
            cron(sweep_files_task, name="sweep_files", second={30}, timeout=60),
            cron(
                schedule_cleanup_task, name="schedule_cleanup", minute={23}, second={0}, timeout=600
            ),
            # Schedules fire within a second of their tick. Not in burst mode: a pass queued
            # every second would keep the queue from ever being empty.
            *(
                []
                if burst
                else [
                    cron(
                        schedule_tick_task, name="schedule_tick", second=set(range(60)), timeout=60
                    )
                ]
            ),
        ],
        "queue_name": QUEUE_NAME,
        "redis_settings": redis_settings(settings.redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": settings.worker_poll_delay,
        "job_timeout": max(300, int(settings.slice_seconds * 20)),
        "keep_result": 60,
        # On SIGTERM a slice is let finish (it ends at a batch boundary and re-enqueues
        # itself from its cursor) instead of being cancelled mid-batch.
        "job_completion_wait": int(settings.slice_seconds) + 10,
        "burst": burst,
        "handle_signals": handle_signals,
    }
    options.update(overrides)
    return Worker(**options)


async def run_forever(settings: Settings) -> None:
    """Run a worker until SIGTERM or SIGINT; when Redis or Postgres goes away, start a new
    one as soon as they are back (arq's own worker stops on a lost Redis connection).
    On a signal every running slice stops at its next batch boundary and re-enqueues its
    job, so the job continues from its cursor on another worker."""
    loop = asyncio.get_running_loop()
    draining = asyncio.Event()
    current: list[Worker] = []

    def on_signal(signum: signal.Signals) -> None:
        draining.set()
        if current:
            current[0].handle_sig_wait_for_completion(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    delay = 0.5
    while not draining.is_set():
        worker = build_worker(settings, handle_signals=False, draining=draining)
        current[:] = [worker]
        started = time.monotonic()
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            if not draining.is_set():
                raise
        except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("worker lost its connection (%s); restarting in %.1fs", exc, delay)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.close(), timeout=settings.slice_seconds + 30)
        if draining.is_set():
            return
        delay = 0.5 if time.monotonic() - started > 60 else min(delay * 2, 10.0)
        await asyncio.sleep(delay)
