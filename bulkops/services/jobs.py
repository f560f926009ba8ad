"""Acting on jobs: cancel (pause, resume and retry build on the same moves)."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from bulkops.db import jobs as jobs_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError, NotFoundError
from bulkops.models import JobState
from bulkops.services.progress import publish_state


async def cancel_job(pool: asyncpg.Pool, redis: Redis, tenant_id: str, job_id: str) -> JobState:
    """A queued or paused job ends CANCELLED at once; a running one is asked to stop
    (CANCELLING) and ends CANCELLED after its current batch, keeping what was done."""
    async with tenant_transaction(pool, tenant_id) as conn:
        try:
            job = (await jobs_db.lock_job(conn, job_id)).state
        except LookupError:
            raise NotFoundError(f"No job {job_id}.", field=["id"]) from None
        if job.terminal:
            raise InputError(
                f"The job already ended {job.status}.", code="JOB_FINISHED", field=["id"]
            )
        if job.status == "CANCELLING":
            return job
        if job.status in ("QUEUED", "PAUSED"):
            job = await jobs_db.set_status(
                conn, job_id, "CANCELLED", step="cancelled", result=job_result(job)
            )
        else:
            job = await jobs_db.set_status(conn, job_id, "CANCELLING", step="cancelling")
    await publish_state(redis, job)
    return job


def job_result(job: JobState) -> dict[str, object]:
    """The summary stored on a job when it ends."""
    return {
        "matched": job.total,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "skipped": job.skipped,
        **job.counters,
    }
