"""Stored files (product images, export files) in a local directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path


class LocalStorage:
    """Files under one root directory, addressed by a relative key."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        # Checked on the text, not by resolving on disk: keys are made by the service,
        # and a resolve per file costs more than the unlink it guards.
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or "\\" in key
            or any(p in ("", ".", "..") for p in parts)
        ):
            raise ValueError(f"storage key {key!r} is not a plain relative path")
        return self.root / key

    def write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete_many(self, keys: list[str]) -> int:
        """Remove files; a file already missing counts as removed. Returns how many existed."""
        existed = 0
        for key in keys:
            try:
                os.unlink(self.path(key))
                existed += 1
            except FileNotFoundError:
                pass
        return existed


_active_storage: ContextVar[LocalStorage | None] = ContextVar("bulkops_storage", default=None)


@contextmanager
def using_storage(storage: LocalStorage) -> Iterator[None]:
    """Make `storage` the one that batch steps run inside this block see (a batch step that
    deletes images checks which of their files still exist before queueing them)."""
    token = _active_storage.set(storage)
    try:
        yield
    finally:
        _active_storage.reset(token)


def active_storage() -> LocalStorage:
    """The storage bound by the enclosing `using_storage`."""
    storage = _active_storage.get()
    if storage is None:
        raise RuntimeError("no storage bound: run batch steps inside using_storage()")
    return storage
