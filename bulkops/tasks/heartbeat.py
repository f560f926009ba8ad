"""A worker's heartbeat: every few seconds, who it is and how many slices it runs, in a
Redis key that expires unless renewed (what `queueStatus` lists as the live workers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from bulkops.services.queue_status import WorkerBeat, record_heartbeat, remove_heartbeat, utc_now
from bulkops.tasks.runner import WorkerDeps

log = logging.getLogger(__name__)


def count_running(deps: WorkerDeps) -> None:
    """Count the current task (an arq job runs in a task of its own) as one of the
    worker's running slices until it ends."""
    task = asyncio.current_task()
    if task is not None:
        deps.running.add(task)
        task.add_done_callback(deps.running.discard)


class Heartbeat:
    """Renews the worker's heartbeat in the background from `start()` to `stop()`."""

    def __init__(self, deps: WorkerDeps, redis: ArqRedis) -> None:
        self.deps = deps
        self.redis = redis
        self.started_at = utc_now()
        self.host = socket.gethostname()
        self.task: asyncio.Task[None] | None = None

    def beat(self) -> WorkerBeat:
        return WorkerBeat(
            id=self.deps.worker_id,
            host=self.host,
            pid=os.getpid(),
            started_at=self.started_at,
            last_seen_at=utc_now(),
            running_slices=len(self.deps.running),
        )

    def start(self) -> None:
        log.info("worker %s started on %s", self.deps.worker_id, self.host)
        self.task = asyncio.create_task(self._run(), name="bulkops-heartbeat")

    async def _run(self) -> None:
        settings = self.deps.settings
        while True:
            try:
                await record_heartbeat(
                    self.redis, self.beat(), ttl_seconds=settings.worker_heartbeat_ttl_seconds
                )
            except (RedisError, OSError) as exc:
                # The worker itself notices a lost Redis and restarts; until then, try again.
                log.debug("heartbeat not recorded: %s", exc)
            await asyncio.sleep(settings.worker_heartbeat_seconds)

    async def stop(self) -> None:
        """Stop renewing and leave the list of live workers at once."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(RedisError, OSError):
            await remove_heartbeat(self.redis, self.deps.worker_id)
        log.info("worker %s stopped", self.deps.worker_id)
