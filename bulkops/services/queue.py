"""Putting job slices on the arq queue, in priority order, and knowing they are there.

arq's queue is a sorted set scored by run time; a slice of a HIGH job is scored earlier
than a NORMAL one enqueued at the same moment, so at every slice boundary the waiting
HIGH work goes first, and within a priority slices run in arrival order, which shares
the workers between tenants and jobs."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.exceptions import RedisError

from bulkops.constants import QUEUE_NAME, purge_job_id, queued_marker, slice_job_id

log = logging.getLogger(__name__)
PURGE_BUCKET_SECONDS = 2

PRIORITY_HEAD_START = {
    "HIGH": timedelta(hours=2),
    "NORMAL": timedelta(hours=1),
    "LOW": timedelta(0),
}
MARKER_TTL = timedelta(days=2)


async def enqueue_slice(
    redis: ArqRedis, job_id: str, tenant_id: str, priority: str, *, delay: float = 0.0
) -> str:
    """Enqueue the next slice of a job; returns the arq job id."""
    arq_id = slice_job_id(job_id, uuid.uuid4().hex[:12])
    run_at = datetime.now(UTC) - PRIORITY_HEAD_START[priority] + timedelta(seconds=delay)
    await redis.enqueue_job(
        "run_job",
        job_id,
        tenant_id,
        _job_id=arq_id,
        _queue_name=QUEUE_NAME,
        _defer_until=run_at,
        _expires=timedelta(days=1),
    )
    await redis.set(queued_marker(job_id), arq_id, ex=MARKER_TTL)
    return arq_id


async def is_waiting(redis: ArqRedis, job_id: str) -> bool:
    """Whether a slice of the job waits in the queue, not yet started by any worker."""
    arq_id = await redis.get(queued_marker(job_id))
    if arq_id is None:
        return False
    name = arq_id.decode() if isinstance(arq_id, bytes) else str(arq_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(job_key_prefix + name)
        pipe.exists(in_progress_key_prefix + name)
        queued, running = await pipe.execute()
    return bool(queued) and not running


async def request_purge(redis: ArqRedis, tenant_id: str, *, final: bool = False) -> None:
    """Ask a worker to remove the tenant's stored files whose rows are gone. Deduplicated:
    the batches of a job asking within the same two seconds make one purge; a job's
    `final` request always makes its own, so nothing waits for the next bucket. Best
    effort: the periodic sweep finds anything left behind."""
    suffix = uuid.uuid4().hex if final else str(int(time.time() // PURGE_BUCKET_SECONDS))
    try:
        await redis.enqueue_job(
            "purge_files",
            tenant_id,
            _job_id=purge_job_id(tenant_id, suffix),
            _queue_name=QUEUE_NAME,
        )
    except (RedisError, OSError):
        log.warning("could not queue a file purge for tenant %s; the sweep will", tenant_id)
