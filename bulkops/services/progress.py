"""Job progress over Redis pub/sub: workers publish, each API process fans out.

One API process holds one pub/sub connection, whatever its number of subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bulkops.constants import BROKER_CHANNEL, job_channel, tenant_jobs_channel
from bulkops.models import JobState

log = logging.getLogger(__name__)


async def publish_state(redis: Redis, state: JobState) -> None:
    """Send a job's new state to its own channel and its tenant's channel.

    Best effort: the database holds the truth and subscribers re-read it when their
    channel is quiet, so a Redis outage delays progress but never stops a job."""
    payload = json.dumps(state.to_json())
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.publish(job_channel(state.id), payload)
            pipe.publish(tenant_jobs_channel(state.tenant_id), payload)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("could not publish job %s version %d: %s", state.id, state.version, exc)


class Broker:
    """Fans the messages of one Redis pub/sub connection out to local listeners."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._listeners: dict[str, set[asyncio.Queue[JobState]]] = {}
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._run(), name="bulkops-broker")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()

    @contextlib.asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[asyncio.Queue[JobState]]:
        """A queue receiving every state published on `channel` while the block runs."""
        queue: asyncio.Queue[JobState] = asyncio.Queue(maxsize=1000)
        async with self._lock:
            first = channel not in self._listeners
            self._listeners.setdefault(channel, set()).add(queue)
            if first and self._pubsub is not None:
                await self._pubsub.subscribe(channel)
        try:
            yield queue
        finally:
            async with self._lock:
                listeners = self._listeners.get(channel)
                if listeners is not None:
                    listeners.discard(queue)
                    if not listeners:
                        del self._listeners[channel]
                        if self._pubsub is not None:
                            with contextlib.suppress(Exception):
                                await self._pubsub.unsubscribe(channel)

    async def _run(self) -> None:
        while True:
            try:
                async with self._lock:
                    self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    await self._pubsub.subscribe(BROKER_CHANNEL, *self._listeners)
                while True:
                    message = await self._pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("pub/sub connection lost; reconnecting", exc_info=True)
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()
                    self._pubsub = None
                await asyncio.sleep(0.5)

    def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        listeners = self._listeners.get(name)
        if not listeners:
            return
        try:
            state = JobState.from_json(json.loads(data))
        except (ValueError, KeyError):
            log.warning("ignoring a malformed message on %s", name)
            return
        for queue in list(listeners):
            if queue.full():
                # A stalled listener loses intermediate states, never the latest one:
                # it re-reads the job when it falls behind.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(state)
