"""Job progress over Redis pub/sub: workers publish, each API process fans out.

One API process holds one pub/sub connection, whatever its number of subscribers. Each
message is decoded once into one immutable `JobState` shared by every local listener; a
listener that falls behind keeps only the newest state of each status run (a status
change or a terminal state is never dropped). Reads of a job's current state by many
subscribers at once share one query (`SharedReads`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

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


T = TypeVar("T")

# States a listener may hold undelivered before the oldest are dropped (a `jobs` listener
# of a busy tenant); coalescing keeps a `job` listener far below this.
MAILBOX_LIMIT = 1000


class Mailbox:
    """The states published to one listener that it has not taken yet, oldest first.

    A new state replaces an undelivered one of the same job and status, so a listener
    that falls behind skips intermediate progress, never a status change nor the
    terminal state, and what it takes is always the newest of each run."""

    __slots__ = ("_pending", "_waiter")

    def __init__(self) -> None:
        self._pending: deque[JobState] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, state: JobState) -> None:
        pending = self._pending
        last = pending[-1] if pending else None
        if (
            last is not None
            and last.id == state.id
            and last.status == state.status
            and last.version < state.version
        ):
            pending[-1] = state
        else:
            pending.append(state)
            if len(pending) > MAILBOX_LIMIT:
                pending.popleft()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> JobState | None:
        return self._pending.popleft() if self._pending else None

    async def get(self, timeout: float | None = None) -> JobState | None:
        """The oldest undelivered state, waiting up to `timeout` seconds; None if none came."""
        if not self._pending:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        return self.get_nowait()


class _Read(Generic[T]):
    __slots__ = ("finished", "future", "started")

    def __init__(self, future: asyncio.Future[T]) -> None:
        self.future = future
        self.started: float | None = None
        self.finished: float | None = None


class SharedReads(Generic[T]):
    """Reads of one key shared by the callers that want one at the same moment.

    A caller says since when the answer must be current (`since`, a `time.monotonic()`
    instant, e.g. when it started listening); it gets the result of a read that started
    at or after that instant: a read still running, one that finished less than
    `max_age` seconds ago, or the next one. At most one read per key runs at a time;
    callers arriving meanwhile wait for the next, which starts when it ends and serves
    them all. So a thousand subscribers opening at once cost a handful of queries."""

    def __init__(self) -> None:
        self._running: dict[Hashable, _Read[T]] = {}
        self._next: dict[Hashable, _Read[T]] = {}
        self._done: dict[Hashable, _Read[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(
        self,
        key: Hashable,
        fetch: Callable[[], Awaitable[T]],
        *,
        since: float,
        max_age: float = 0.0,
    ) -> T:
        done = self._done.get(key)
        if (
            done is not None
            and done.started is not None
            and done.finished is not None
            and done.started >= since
            and time.monotonic() - done.finished <= max_age
        ):
            return done.future.result()
        running = self._running.get(key)
        if running is not None and running.started is not None and running.started >= since:
            return await asyncio.shield(running.future)
        batch = self._next.get(key)
        if batch is None:
            batch = _Read(asyncio.get_running_loop().create_future())
            self._next[key] = batch
            task = asyncio.create_task(self._run(key, batch, fetch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(batch.future)

    async def _run(self, key: Hashable, batch: _Read[T], fetch: Callable[[], Awaitable[T]]) -> None:
        try:
            previous = self._running.get(key)
            if previous is not None:
                await asyncio.wait([previous.future])
            # From here on, new callers need a later read than this one.
            del self._next[key]
            self._running[key] = batch
            batch.started = time.monotonic()
            try:
                result = await fetch()
            finally:
                del self._running[key]
        except asyncio.CancelledError:
            if self._next.get(key) is batch:
                del self._next[key]
            batch.future.cancel()
            raise
        except Exception as exc:
            batch.future.set_exception(exc)
            batch.future.exception()  # retrieved: every caller may have gone
        else:
            batch.finished = time.monotonic()
            batch.future.set_result(result)
            if len(self._done) >= 10_000:
                self._done.clear()
            self._done[key] = batch

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Broker:
    """Fans the messages of one Redis pub/sub connection out to local listeners."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._listeners: dict[str, set[Mailbox]] = {}
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # Current job states read from the database, shared by subscribers (see SharedReads).
        self.reads: SharedReads[Any] = SharedReads()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._run(), name="bulkops-broker")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.reads.close()
        if self._pubsub is not None:
            await self._pubsub.aclose()

    @contextlib.asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[Mailbox]:
        """A mailbox receiving the states published on `channel` while the block runs."""
        mailbox = Mailbox()
        listeners = self._listeners.get(channel)
        if listeners is not None:
            # The channel is subscribed on Redis already: joining needs no round trip.
            listeners.add(mailbox)
        else:
            async with self._lock:
                listeners = self._listeners.get(channel)
                if listeners is None:
                    if self._pubsub is not None:
                        try:
                            await self._pubsub.subscribe(channel)
                        except (RedisError, OSError):
                            # The reader reconnects and subscribes to every listened channel;
                            # meanwhile the subscriber's re-reads keep it current.
                            log.warning("could not subscribe to %s", channel)
                    listeners = self._listeners[channel] = set()
                listeners.add(mailbox)
        try:
            yield mailbox
        finally:
            listeners = self._listeners.get(channel)
            if listeners is not None:
                listeners.discard(mailbox)
                if not listeners:
                    async with self._lock:
                        # Nobody joined while the lock was awaited: leave the channel.
                        if not self._listeners.get(channel, True):
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
            # Decoded once, shared (immutable) by every listener of the channel.
            state = JobState.from_json(json.loads(data))
        except (ValueError, KeyError):
            log.warning("ignoring a malformed message on %s", name)
            return
        for mailbox in listeners:
            mailbox.put(state)
