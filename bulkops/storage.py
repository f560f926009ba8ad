"""Stored files (product images, fetched images, export files) in an object store: S3 or any
S3-compatible store, Google Cloud Storage, Azure Blob Storage, or a local folder, through
obstore, addressed by plain relative keys.

An object store cannot append, so a file written over several transactions (an export) is
stored in parts: `KEY/OFFSET`, one object per part, named by the byte offset it starts at.
The file is its parts in order up to the size its owner recorded; a part re-written at the
same offset replaces the one before, and a part at or past the recorded size is ignored."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import obstore
from obstore.store import LocalStore, ObjectStore, from_url

from bulkops.config import Settings

log = logging.getLogger(__name__)
# Requests in flight at once for many small objects (images): enough to hide a store's
# latency, few enough not to be throttled.
CONCURRENCY = 32
# Stream chunks of about this size to a client.
CHUNK_BYTES = 256 * 1024
_OFFSET_DIGITS = 16


# obstore hands an async call's result back from one of its own threads, which may still
# hold Python for a moment after the awaiting code has moved on; a process that exits in
# that moment aborts (SIGABRT, a known race of pyo3-async-runtimes). A short wait before
# the interpreter shuts down lets those threads let go.
EXIT_GRACE_SECONDS = 0.05
_exit_guard = False


def _guard_exit() -> None:
    global _exit_guard
    if not _exit_guard:
        _exit_guard = True
        atexit.register(time.sleep, EXIT_GRACE_SECONDS)


class StorageKeyError(ValueError):
    """The key is not a plain relative path."""


@dataclass(frozen=True)
class Part:
    """One stored part of a file written in parts: its key, first byte and size."""

    key: str
    offset: int
    size: int


def check_key(key: str) -> str:
    """The key itself when it is a plain relative path (no leading slash, no `.` or `..`
    segments, no backslashes); else StorageKeyError."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise StorageKeyError(f"storage key {key!r} is not a plain relative path")
    return key


def part_key(key: str, offset: int) -> str:
    return f"{check_key(key)}/{offset:0{_OFFSET_DIGITS}d}"


class Storage:
    """Files in one object store (under one prefix), addressed by a relative key."""

    def __init__(self, store: ObjectStore, *, url: str) -> None:
        _guard_exit()
        self.store = store
        self.url = url
        self._limit = asyncio.Semaphore(CONCURRENCY)

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, str] | None = None) -> Storage:
        """`s3://BUCKET/PREFIX`, `gs://…`, `az://…` or `file:///path`. Credentials come from
        `options` (`endpoint`, `access_key_id`, `secret_access_key`, `region`, `allow_http`)
        or, for those not given, the store's standard variables (AWS_ACCESS_KEY_ID, …)."""
        parsed = urlsplit(url)
        if parsed.scheme == "file":
            root = Path(unquote(parsed.path))
            root.mkdir(parents=True, exist_ok=True)
            return cls(LocalStore(root), url=url)
        config = dict(options or {})
        client: dict[str, Any] = {}
        if "allow_http" in config:
            client["allow_http"] = config.pop("allow_http").lower() == "true"
        # The options are the store's own names; obstore checks them per scheme.
        store: ObjectStore = from_url(
            url, config=cast(Any, config or None), client_options=cast(Any, client or None)
        )
        return cls(store, url=url)

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        if settings.storage_url is None and not settings.dev:
            log.warning(
                "BULKOPS_STORAGE_URL is not set: files are kept in %s, on this machine only",
                settings.resolved_storage_url,
            )
        return cls.from_url(settings.resolved_storage_url, settings.storage_options)

    async def write(self, key: str, data: bytes) -> None:
        """Store the file, replacing one under the same key."""
        async with self._limit:
            await obstore.put_async(self.store, check_key(key), data)

    async def write_many(self, files: Mapping[str, bytes]) -> None:
        await asyncio.gather(*(self.write(key, data) for key, data in files.items()))

    async def read(self, key: str) -> bytes | None:
        """The whole file, or None when there is none."""
        try:
            result = await obstore.get_async(self.store, check_key(key))
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            return None

    async def existing(self, keys: Iterable[str]) -> set[str]:
        """Which of these files exist."""

        async def present(key: str) -> str | None:
            async with self._limit:
                try:
                    await obstore.head_async(self.store, check_key(key))
                except FileNotFoundError:
                    return None
            return key

        found = await asyncio.gather(*(present(k) for k in keys))
        return {k for k in found if k is not None}

    async def delete_many(self, keys: list[str]) -> None:
        """Remove files; a file already missing is not an error."""
        checked = [check_key(k) for k in keys]
        if not checked:
            return
        try:
            # One request per thousand keys on S3; a local folder removes one by one.
            await obstore.delete_async(self.store, checked)
        except FileNotFoundError:
            await asyncio.gather(*(self._delete_one(k) for k in checked))

    async def _delete_one(self, key: str) -> None:
        async with self._limit:
            with contextlib.suppress(FileNotFoundError):
                await obstore.delete_async(self.store, key)

    async def keys(self, prefix: str = "") -> list[str]:
        """The keys of the stored objects under `prefix` (parts are objects), sorted."""
        listed = await obstore.list(self.store, prefix=prefix or None).collect_async()
        return sorted(meta["path"] for meta in listed)

    async def write_part(self, key: str, offset: int, data: bytes) -> None:
        """Store the part of the file `key` that starts at byte `offset`."""
        async with self._limit:
            await obstore.put_async(self.store, part_key(key, offset), data)

    async def parts(self, key: str, size: int) -> list[Part] | None:
        """The parts making up the first `size` bytes of the file, in order; None when they
        do not (a part is missing: the file was removed)."""
        prefix = f"{check_key(key)}/"
        listed = await obstore.list(self.store, prefix=prefix).collect_async()
        found = sorted(
            (int(name), meta["size"], meta["path"])
            for meta in listed
            if (name := meta["path"].rsplit("/", 1)[1]).isdigit()
        )
        parts: list[Part] = []
        end = 0
        for offset, length, path in found:
            if offset >= size and parts:
                break
            if offset != end:
                return None
            parts.append(Part(path, offset, min(length, size - offset)))
            end = offset + length
        return parts if parts and end >= size else None

    async def stream_parts(
        self, parts: list[Part], *, start: int, end: int
    ) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` (exclusive) of a file written in parts."""
        for part in parts:
            first, last = max(start, part.offset), min(end, part.offset + part.size)
            if first >= last:
                continue
            result = await obstore.get_async(
                self.store, part.key, options={"range": (first - part.offset, last - part.offset)}
            )
            async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                yield bytes(chunk)

    async def delete_parted(self, keys: list[str]) -> None:
        """Remove files written in parts, every part of each."""
        found: list[str] = []
        for key in keys:
            listed = await obstore.list(self.store, prefix=f"{check_key(key)}/").collect_async()
            found.extend(meta["path"] for meta in listed)
        await self.delete_many(found)
