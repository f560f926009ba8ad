"""How many job slices wait on the queue for a worker, by priority.

The queue does not store a slice's priority: it is the head start the slice's score was
given (see `bulkops.services.queue`), which is the slice's enqueue time minus its score.
A slice deferred past its enqueue time (its tenant was over its quota) has no head start
and takes its turn as a LOW one does, so it counts as LOW."""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import DeserializationError, deserialize_job_raw
from arq.utils import timestamp_ms

from bulkops.constants import QUEUE_NAME, SLICE_PREFIX
from bulkops.domain import Priority
from bulkops.services.queue import PRIORITY_HEAD_START


async def waiting_slices(redis: ArqRedis) -> dict[Priority, int]:
    """Slices that may start now and no worker has started, by priority, in two round
    trips. Slices scheduled later (a tenant over its quota, a retry) are not counted:
    they wait for their time, not for a worker."""
    counts = dict.fromkeys(Priority, 0)
    entries = await redis.zrangebyscore(
        QUEUE_NAME, min=float("-inf"), max=timestamp_ms(), withscores=True
    )
    slices = [
        (name.decode(), score) for name, score in entries if name.startswith(SLICE_PREFIX.encode())
    ]
    if not slices:
        return counts
    async with redis.pipeline(transaction=False) as pipe:
        for name, _ in slices:
            pipe.exists(in_progress_key_prefix + name)
            pipe.get(job_key_prefix + name)
        found = await pipe.execute()
    for (_, score), running, payload in zip(slices, found[0::2], found[1::2], strict=True):
        if running or payload is None:
            continue
        try:
            enqueued_ms = deserialize_job_raw(payload, deserializer=redis.job_deserializer)[4]
        except DeserializationError:
            continue
        counts[_priority(enqueued_ms - score)] += 1
    return counts


def _priority(head_start_ms: float) -> Priority:
    """The priority whose head start is nearest the one a slice was given."""
    return min(
        PRIORITY_HEAD_START,
        key=lambda p: abs(PRIORITY_HEAD_START[p].total_seconds() * 1000 - head_start_ms),
    )
