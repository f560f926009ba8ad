"""A COPY in a tenant transaction, streamed to a slow reader: the catalog download and a
job's failed items both go out this way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

import asyncpg

from bulkops.db.pool import tenant_transaction
from bulkops.errors import BulkopsError

log = logging.getLogger(__name__)

# Postgres sends a COPY's rows about 8 KB at a time. They go to the client in blocks of about
# this size (the first at once): one queue slot, one HTTP chunk and one socket write each
# instead of one per 8 KB, whose handling cost the API and the client more than the bytes.
BLOCK_BYTES = 256 * 1024
# Blocks that the COPY may run ahead of the client: memory stays a few blocks whatever the
# size of the download.
QUEUE_CHUNKS = 4
# A client that takes no data for this long has its download stopped, so that a stalled
# download does not hold a database connection and an open transaction for ever.
STALL_SECONDS = 120.0
# How long closing a download may wait for the COPY to stop and the connection to return.
CLOSE_SECONDS = 10.0

Output = Callable[[bytes], Awaitable[None]]
Copy = Callable[[asyncpg.Connection, Output], Awaitable[None]]


class ExportStalledError(BulkopsError):
    """The client took no data for STALL_SECONDS."""


class ExportClosedError(BulkopsError):
    """The download was closed before the COPY ended (the client went away)."""


class CopyStream:
    """One download: a COPY in a tenant transaction, feeding a small queue that `chunks()` drains.

    The COPY starts when `chunks()` is first iterated and blocks while the queue is full, so
    it never runs more than QUEUE_CHUNKS ahead of the client. `aclose()` must follow, whatever
    happened: it stops a COPY still running (the transaction rolls back and the connection
    goes back to the pool clean) and calls `on_close` once the connection is back.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        tenant_id: str,
        copy: Copy,
        *,
        name: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._tenant_id = tenant_id
        self._copy_to = copy
        # What the log calls it: "export" (the catalog download), "errors download".
        self._name = name
        self._on_close = on_close
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self._producer: asyncio.Task[None] | None = None
        self._closing = False
        self._waiting_for_reader = False
        self._released = False
        # What the COPY has sent since the last block was queued; None until the first one.
        self._block: list[bytes] | None = None
        self._block_bytes = 0

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The export's bytes; raises the COPY's error if it fails midway."""
        if self._closing:
            raise ExportClosedError
        self._producer = asyncio.create_task(self._copy(), name="bulkops-download")
        while True:
            chunks = [await self._queue.get()]
            # Whatever else is queued goes out in the same write: fewer, larger sends when
            # the client is the slower side.
            while not self._queue.empty() and chunks[-1] is not None:
                chunks.append(self._queue.get_nowait())
            end = chunks[-1] is None
            data = b"".join(c for c in chunks if c is not None)
            if data:
                yield data
            if end:
                break
        await self._producer

    async def aclose(self) -> None:
        """Stop the COPY if it still runs and wait (a bounded time) for its connection."""
        if self._closing:
            return
        self._closing = True
        producer = self._producer
        try:
            if producer is None or producer.done():
                return
            # Cancelling the task while asyncpg awaits the server can leave the connection
            # mid-COPY (the data arrived, the task had not resumed yet). Cancelled inside
            # `output`, asyncpg aborts the COPY properly; otherwise `output` raises at its
            # next call, as soon as the next chunk arrives.
            if self._waiting_for_reader:
                producer.cancel()
            done, _ = await asyncio.wait({producer}, timeout=CLOSE_SECONDS)
            if not done:
                log.warning(
                    "%s: the COPY did not stop within %.0f s; cancelling", self._name, CLOSE_SECONDS
                )
                producer.cancel()
                await asyncio.wait({producer}, timeout=CLOSE_SECONDS)
        finally:
            if producer is not None and producer.done() and not producer.cancelled():
                # Retrieved here so that asyncio does not log it at garbage collection.
                producer.exception()
            if producer is None:
                self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            if self._on_close is not None:
                self._on_close()

    async def _put(self, chunk: bytes | None) -> None:
        if self._closing:
            raise ExportClosedError
        if not self._queue.full():
            self._queue.put_nowait(chunk)
            return
        self._waiting_for_reader = True
        try:
            await asyncio.wait_for(self._queue.put(chunk), STALL_SECONDS)
        except TimeoutError:
            raise ExportStalledError(f"no data taken for {STALL_SECONDS:g} s") from None
        finally:
            self._waiting_for_reader = False

    async def _output(self, chunk: bytes) -> None:
        if self._closing:
            raise ExportClosedError
        if self._block is None:
            # The first rows go out at once: the client sees the download start.
            self._block = []
            await self._put(bytes(chunk))
            return
        # asyncpg hands over a fresh bytearray each time: kept as it is until joined.
        self._block.append(chunk)
        self._block_bytes += len(chunk)
        if self._block_bytes >= BLOCK_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._block:
            # bytes, as ASGI servers want.
            data = b"".join(self._block)
            self._block.clear()
            self._block_bytes = 0
            await self._put(data)

    async def _copy(self) -> None:
        try:
            async with tenant_transaction(self._pool, self._tenant_id) as conn:
                await self._copy_to(conn, self._output)
        except (asyncio.CancelledError, ExportClosedError):
            raise
        except BaseException as exc:
            log.warning("%s stopped: %s: %s", self._name, type(exc).__name__, exc)
            # The reader may be stalled: make room for the end mark, the response is cut
            # short anyway.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
            raise
        finally:
            # The connection is back in the pool: the slot is free even while the client
            # still holds the response.
            self._release()
        await self._flush()
        await self._put(None)
