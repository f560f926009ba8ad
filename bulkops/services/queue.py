"""Putting job slices on the arq queue, in priority order, and knowing they are there.

arq's queue is a sorted set scored by run time; a slice of a HIGH job is scored earlier
than a NORMAL one enqueued at the same moment, so at every slice boundary the waiting
HIGH work goes first, and within a priority slices run in arrival order, which shares
the workers between tenants and jobs."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import DeserializationError, deserialize_job_raw, serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from bulkops.constants import (
    QUEUE_NAME,
    SLICE_PREFIX,
    job_channel,
    purge_job_id,
    queued_marker,
    slice_job_id,
    tenant_jobs_channel,
)
from bulkops.domain import Priority
from bulkops.models import JobState

log = logging.getLogger(__name__)
PURGE_BUCKET_SECONDS = 2

PRIORITY_HEAD_START = {
    Priority.HIGH: timedelta(hours=2),
    Priority.NORMAL: timedelta(hours=1),
    Priority.LOW: timedelta(0),
}
MARKER_TTL = timedelta(days=2)
# A slice not started within a day is dropped by arq (the reconciler queues it again).
SLICE_EXPIRES = timedelta(days=1)


async def enqueue_slice(
    redis: ArqRedis,
    job_id: str,
    tenant_id: str,
    priority: str,
    *,
    delay: float = 0.0,
    announce: JobState | None = None,
) -> str:
    """Enqueue the next slice of a job; returns the arq job id. With `announce`, the job's
    state is published to its channels in the same round trip.

    The slice is written as arq's `enqueue_job` writes it (the job key, then its score in
    the queue), in one MULTI/EXEC with the queued marker, without arq's check for an
    existing job of the same id: slice ids are new every time."""
    arq_id = slice_job_id(job_id, uuid.uuid4().hex[:12])
    now_ms = timestamp_ms()
    # With a `delay` (a job over its tenant's quota) the slice waits that long, then takes
    # its turn after the work already waiting: the score is both when arq may start a job
    # and its place in the queue, and a head start would cancel the wait (the worker would
    # take the job straight back, over and over).
    if delay > 0:
        score = now_ms + int(delay * 1000)
    else:
        score = now_ms - int(PRIORITY_HEAD_START[Priority(priority)].total_seconds() * 1000)
    payload = serialize_job(
        "run_job",
        (job_id, tenant_id),
        {},
        None,
        now_ms,
        serializer=redis.job_serializer,
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.psetex(job_key_prefix + arq_id, int(SLICE_EXPIRES.total_seconds() * 1000), payload)
        pipe.zadd(QUEUE_NAME, {arq_id: score})
        pipe.set(queued_marker(job_id), arq_id, ex=MARKER_TTL)
        if announce is not None:
            message = json.dumps(announce.to_json())
            pipe.publish(job_channel(announce.id), message)
            pipe.publish(tenant_jobs_channel(announce.tenant_id), message)
        await pipe.execute()
    return arq_id


async def work_waiting(redis: ArqRedis, *, look: int = 20) -> bool:
    """Whether a job in the queue may start now and no worker has started it: what a
    running slice yields to. The first `look` startable entries are checked (running jobs
    stay in arq's queue until they end); when all of them run, more may wait behind."""
    ready = await redis.zrangebyscore(
        QUEUE_NAME, min=float("-inf"), max=timestamp_ms(), start=0, num=look
    )
    if not ready:
        return False
    if len(ready) >= look:
        return True
    async with redis.pipeline(transaction=False) as pipe:
        for name in ready:
            pipe.exists(in_progress_key_prefix + name.decode())
        running = await pipe.execute()
    return not all(running)


async def waiting_among(redis: ArqRedis, job_ids: list[str]) -> set[str]:
    """Those of `job_ids` whose slice waits in the queue, not yet started by any worker,
    in two round trips whatever their number."""
    if not job_ids:
        return set()
    markers = await redis.mget([queued_marker(j) for j in job_ids])
    named = [
        (job_id, m.decode() if isinstance(m, bytes) else str(m))
        for job_id, m in zip(job_ids, markers, strict=True)
        if m is not None
    ]
    if not named:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for _, name in named:
            pipe.exists(job_key_prefix + name)
            pipe.exists(in_progress_key_prefix + name)
        found = await pipe.execute()
    return {
        job_id
        for (job_id, _), queued, running in zip(named, found[0::2], found[1::2], strict=True)
        if queued and not running
    }


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


@dataclass(frozen=True)
class QueuedSlice:
    """A job slice in arq's queue, as the queue records it."""

    # None for a slice put back with a delay (a retry, a tenant over its running-job
    # quota): its score no longer says its priority.
    priority: Priority | None
    enqueued_ms: int
    # When a worker may start it (its score).
    startable_ms: int
    running: bool


def priority_of(enqueued_ms: int, score: int) -> Priority | None:
    """The priority `enqueue_slice` gave a slice, read back from its head start."""
    head_start = enqueued_ms - score
    for priority, start in PRIORITY_HEAD_START.items():
        if head_start >= start.total_seconds() * 1000:
            return priority
    return None


async def queued_slices(
    redis: ArqRedis, *, startable_by_ms: int | None = None, chunk: int = 1000
) -> list[QueuedSlice]:
    """Every job slice in the queue, waiting or running (only those a worker may start by
    `startable_by_ms`, when given). One read of the queue, then the slices' payloads (their
    enqueue time) in pipelines of `chunk`."""
    top = "+inf" if startable_by_ms is None else startable_by_ms
    entries = await redis.zrangebyscore(QUEUE_NAME, "-inf", top, withscores=True)
    prefix = SLICE_PREFIX.encode()
    named = [(name.decode(), int(score)) for name, score in entries if name.startswith(prefix)]
    found: list[QueuedSlice] = []
    for start in range(0, len(named), chunk):
        part = named[start : start + chunk]
        async with redis.pipeline(transaction=False) as pipe:
            for name, _ in part:
                pipe.get(job_key_prefix + name)
                pipe.exists(in_progress_key_prefix + name)
            replies = await pipe.execute()
        for (_, score), payload, running in zip(part, replies[0::2], replies[1::2], strict=True):
            if payload is None:
                # Expired: arq drops it when it comes up, and the reconciler queues the job again.
                continue
            try:
                enqueued_ms = deserialize_job_raw(payload, deserializer=redis.job_deserializer)[4]
            except DeserializationError:
                continue
            found.append(
                QueuedSlice(priority_of(enqueued_ms, score), enqueued_ms, score, bool(running))
            )
    return found
