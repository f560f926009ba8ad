"""The streaming export: query parameters to a filter, and the COPY as a stream of chunks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from datetime import UTC, datetime

import asyncpg

from bulkops.db.datasets import dataset_exists
from bulkops.db.export import ExportFormat, copy_products
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError, NotFoundError
from bulkops.selection import PRODUCT_STATUSES, ProductFilter, parse_id

log = logging.getLogger(__name__)

# Chunks (one per read from Postgres, up to a few hundred KB) that the COPY may run ahead of
# the client: memory stays a few chunks whatever the size of the export.
QUEUE_CHUNKS = 4
# A client that takes no data for this long has its export stopped, so that a stalled
# download does not hold a database connection and an open transaction for ever.
STALL_SECONDS = 120.0
# How long closing an export may wait for the COPY to stop and the connection to return.
CLOSE_SECONDS = 10.0

_LISTS = {"status": "status", "brand": "brand", "category": "category"}
_SINGLE = {
    "datasetId": "dataset_id",
    "skuPrefix": "sku_prefix",
    "search": "search",
    "createdAfter": "created_after",
    "createdBefore": "created_before",
}
PARAMETERS = (*_LISTS, *_SINGLE)


class BadParameterError(InputError):
    """A query parameter is not valid."""

    code = "BAD_USER_INPUT"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message, field=[name])


def _datetime(name: str, value: str) -> datetime:
    # An unencoded "+" of an offset arrives as a space: "...T10:00:00 02:00".
    head, space, offset = value.rpartition(" ")
    candidates = [value, f"{head}+{offset}"] if space else [value]
    for candidate in candidates:
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        # A time without an offset is taken as UTC.
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise BadParameterError(name, f"{name}: {value!r} is not an ISO 8601 date or date and time.")


def parse_filter(params: Iterable[tuple[str, str]]) -> ProductFilter:
    """The ProductFilter of an export's query parameters, or BadParameterError naming the
    first parameter that is unknown, repeated (when single), or not valid."""
    lists: dict[str, list[str]] = {}
    single: dict[str, str] = {}
    for name, value in params:
        if "\x00" in value:
            raise BadParameterError(name, f"{name}: a value may not contain a NUL character.")
        if name in _LISTS:
            lists.setdefault(name, []).append(value)
        elif name in _SINGLE:
            if name in single:
                raise BadParameterError(name, f"{name} may be given only once.")
            single[name] = value
        else:
            raise BadParameterError(
                name, f"Unknown parameter {name!r}; expected one of {', '.join(PARAMETERS)}."
            )
    for status in lists.get("status", []):
        if status not in PRODUCT_STATUSES:
            raise BadParameterError(
                "status",
                f"Unknown status {status!r}; expected one of {', '.join(PRODUCT_STATUSES)}.",
            )
    fields: dict[str, object] = {_LISTS[k]: tuple(v) for k, v in lists.items()}
    for name, value in single.items():
        if name == "datasetId":
            try:
                fields["dataset_id"] = parse_id(value, [name])
            except InputError:
                raise BadParameterError(name, f"datasetId: {value!r} is not a valid id.") from None
        elif name in ("createdAfter", "createdBefore"):
            fields[_SINGLE[name]] = _datetime(name, value)
        else:
            fields[_SINGLE[name]] = value
    return ProductFilter.model_validate(fields)


async def check_filter(pool: asyncpg.Pool, tenant_id: str, flt: ProductFilter) -> None:
    """NotFoundError when the filter names a dataset the tenant does not have."""
    if flt.dataset_id is None:
        return
    async with tenant_transaction(pool, tenant_id) as conn:
        if not await dataset_exists(conn, flt.dataset_id):
            raise NotFoundError(f"Dataset {flt.dataset_id} not found.", field=["datasetId"])


class ExportStalledError(Exception):
    """The client took no data for STALL_SECONDS."""


class ExportClosedError(Exception):
    """The export was closed before the COPY ended (the client went away)."""


class ExportStream:
    """One export: a COPY in a tenant transaction, feeding a small queue that `chunks()` drains.

    The COPY starts when `chunks()` is first iterated and blocks while the queue is full, so
    it never runs more than QUEUE_CHUNKS ahead of the client. `aclose()` must follow, whatever
    happened: it stops a COPY still running (the transaction rolls back and the connection
    goes back to the pool clean) and calls `on_close` once the connection is back.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        tenant_id: str,
        flt: ProductFilter,
        fmt: ExportFormat,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._tenant_id = tenant_id
        self._filter = flt
        self._format = fmt
        self._on_close = on_close
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self._producer: asyncio.Task[None] | None = None
        self._closing = False
        self._waiting_for_reader = False
        self._released = False

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The export's bytes; raises the COPY's error if it fails midway."""
        if self._closing:
            raise ExportClosedError
        self._producer = asyncio.create_task(self._copy(), name="bulkops-export")
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
                    "export: the COPY did not stop within %.0f s; cancelling", CLOSE_SECONDS
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
        # asyncpg hands over a fresh bytearray; ASGI servers want bytes.
        await self._put(bytes(chunk))

    async def copy(
        self, conn: asyncpg.Connection, output: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """The COPY itself, in the tenant's transaction (another download overrides it)."""
        await copy_products(conn, self._filter, self._format, output=output)

    async def _copy(self) -> None:
        try:
            async with tenant_transaction(self._pool, self._tenant_id) as conn:
                await self.copy(conn, self._output)
        except (asyncio.CancelledError, ExportClosedError):
            raise
        except BaseException as exc:
            log.warning("export stopped: %s: %s", type(exc).__name__, exc)
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
        await self._put(None)


def export_filename(fmt: ExportFormat, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"products-{stamp}.{fmt}"
