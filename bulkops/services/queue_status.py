"""What the shared queue holds and which workers are alive, for operators.

Workers announce themselves with a heartbeat: a key per worker that expires unless renewed,
indexed by a sorted set scored by that expiry, so listing the live workers reads only them
and a worker that stopped heartbeating drops out by itself."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from arq.connections import ArqRedis

from bulkops.constants import WORKERS_KEY, worker_heartbeat
from bulkops.domain import Priority
from bulkops.services.queue import queued_slices


@dataclass(frozen=True)
class WorkerBeat:
    """One worker's latest heartbeat."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    running_slices: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "host": self.host,
                "pid": self.pid,
                "started_at": self.started_at.isoformat(),
                "last_seen_at": self.last_seen_at.isoformat(),
                "running_slices": self.running_slices,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> WorkerBeat:
        data = json.loads(raw)
        return cls(
            id=data["id"],
            host=data["host"],
            pid=int(data["pid"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            last_seen_at=datetime.fromisoformat(data["last_seen_at"]),
            running_slices=int(data["running_slices"]),
        )


@dataclass(frozen=True)
class QueueStatus:
    """The queue and the workers at one moment."""

    waiting: dict[Priority, int]
    # Put back with a delay (retries, tenants over their running-job quota).
    deferred: int
    running_slices: int
    # How long the slice that has waited longest since it could start has waited.
    oldest_waiting_seconds: float | None
    workers: list[WorkerBeat]


async def record_heartbeat(redis: ArqRedis, beat: WorkerBeat, *, ttl_seconds: float) -> None:
    """Say `beat.id` is alive for `ttl_seconds`; forget workers whose heartbeat lapsed."""
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(worker_heartbeat(beat.id), beat.to_json(), px=int(ttl_seconds * 1000))
        pipe.zadd(WORKERS_KEY, {beat.id: now_ms + int(ttl_seconds * 1000)})
        pipe.zremrangebyscore(WORKERS_KEY, "-inf", now_ms)
        await pipe.execute()


async def remove_heartbeat(redis: ArqRedis, worker_id: str) -> None:
    """A worker stopping cleanly leaves the list at once."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(worker_heartbeat(worker_id))
        pipe.zrem(WORKERS_KEY, worker_id)
        await pipe.execute()


async def live_workers(redis: ArqRedis) -> list[WorkerBeat]:
    """The workers whose heartbeat has not expired, oldest first."""
    now_ms = int(time.time() * 1000)
    ids = await redis.zrangebyscore(WORKERS_KEY, now_ms, "+inf")
    if not ids:
        return []
    raw = await redis.mget([worker_heartbeat(i.decode()) for i in ids])
    beats = [WorkerBeat.from_json(value) for value in raw if value is not None]
    return sorted(beats, key=lambda beat: (beat.started_at, beat.id))


async def read_queue_status(redis: ArqRedis, *, now: float | None = None) -> QueueStatus:
    """Waiting slices by priority, deferred and running ones, the longest wait, and the
    live workers. `now` (seconds since the epoch) is for tests."""
    now_ms = int((time.time() if now is None else now) * 1000)
    waiting = dict.fromkeys(Priority, 0)
    deferred = running = 0
    oldest_ms: int | None = None
    for queued in await queued_slices(redis):
        if queued.running:
            running += 1
            continue
        if queued.priority is None:
            deferred += 1
        else:
            waiting[queued.priority] += 1
        since = max(queued.enqueued_ms, queued.startable_ms)
        if since <= now_ms and (oldest_ms is None or since < oldest_ms):
            oldest_ms = since
    return QueueStatus(
        waiting=waiting,
        deferred=deferred,
        running_slices=running,
        oldest_waiting_seconds=None if oldest_ms is None else (now_ms - oldest_ms) / 1000,
        workers=await live_workers(redis),
    )


async def waiting_slices(redis: ArqRedis) -> dict[Priority, int]:
    """Slices that may start now and no worker has started, by priority. Slices scheduled
    later (a tenant over its quota, a retry) wait for their time, not for a worker, and are
    not counted; once their time has come they take their turn as LOW ones do."""
    counts = dict.fromkeys(Priority, 0)
    for queued in await queued_slices(redis, startable_by_ms=int(time.time() * 1000)):
        if not queued.running:
            counts[queued.priority or Priority.LOW] += 1
    return counts


def utc_now() -> datetime:
    return datetime.now(UTC)
