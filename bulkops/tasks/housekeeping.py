"""Periodic work of the workers: re-enqueue jobs the queue lost, remove expired jobs."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis

from bulkops.db import export_files as export_files_db
from bulkops.db import housekeeping as housekeeping_db
from bulkops.db import image_sources as image_sources_db
from bulkops.db import imports as imports_db
from bulkops.services import webhook_delivery
from bulkops.services.files import purge_deleted_files
from bulkops.services.queue import enqueue_slice, request_purge, waiting_among
from bulkops.tasks.runner import WorkerDeps

log = logging.getLogger(__name__)


async def reconcile(deps: WorkerDeps, redis: ArqRedis) -> int:
    """Re-enqueue every unfinished job that no worker holds and no queued slice carries:
    its worker died (its lease lapsed) or Redis lost the queue. The database is the
    source of truth. Returns how many jobs were re-enqueued."""
    async with deps.pool.acquire() as conn:
        jobs = await housekeeping_db.unheld_jobs(
            conn, timedelta(seconds=deps.settings.lease_seconds)
        )
    # A backlog of queued jobs is unheld too: ask Redis about all of them at once.
    waiting = await waiting_among(redis, [job.id for job in jobs])
    revived = 0
    for job in jobs:
        if job.id in waiting:
            continue
        await enqueue_slice(redis, job.id, job.tenant_id, job.priority)
        revived += 1
    if revived:
        log.warning("re-enqueued %d job(s) that had no live worker or queued slice", revived)
    else:
        # Every few seconds on every worker: only worth reading when debugging.
        log.debug("reconciled %d unfinished job(s): none lost", len(jobs))
    return revived


async def remove_expired(deps: WorkerDeps) -> int:
    """Remove finished jobs past the retention, with their items and errors, expired
    idempotency keys, matchProducts inputs and fetchProductImages sources no job names
    any more, staged imports left behind, and webhook deliveries past their retention.
    Export files whose links expired (or whose jobs go now, or ended without a result)
    are queued for the file purge, which the periodic sweep starts. Returns how many
    jobs were removed."""
    retention = timedelta(days=deps.settings.job_retention_days)
    async with deps.pool.acquire() as conn:
        queued = await export_files_db.remove_expired(conn, retention)
        if queued:
            log.info("queued %d expired export file(s) for removal", queued)
        removed = await housekeeping_db.remove_expired(conn, retention)
        await housekeeping_db.remove_expired_match_inputs(conn, retention)
        await image_sources_db.remove_expired(conn, retention)
        await imports_db.remove_stale(conn)
    await webhook_delivery.remove_expired(deps.services)
    log.log(logging.INFO if removed else logging.DEBUG, "removed %d expired job(s)", removed)
    return removed


async def sweep_files(deps: WorkerDeps, redis: ArqRedis) -> int:
    """Queue a purge for every tenant with stored files still waiting to be removed."""
    async with deps.pool.acquire() as conn:
        tenants = await housekeeping_db.tenants_with_file_deletions(conn)
    for tenant_id in tenants:
        await request_purge(redis, tenant_id)
    log.debug("file sweep: purges queued for %d tenant(s)", len(tenants))
    return len(tenants)


async def purge_files_task(ctx: dict[str, Any], tenant_id: str) -> int:
    deps: WorkerDeps = ctx["deps"]
    return await purge_deleted_files(deps.pool, deps.storage, tenant_id)


async def sweep_files_task(ctx: dict[str, Any]) -> int:
    return await sweep_files(ctx["deps"], ctx["redis"])


async def reconcile_task(ctx: dict[str, Any]) -> int:
    return await reconcile(ctx["deps"], ctx["redis"])


async def cleanup_task(ctx: dict[str, Any]) -> int:
    return await remove_expired(ctx["deps"])
