"""Stored files (product images, export files) in a local directory."""

from __future__ import annotations

import os
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
        """Write the file, making its directory when it does not exist yet. The write is
        tried first: most files go to a directory that exists (a job's images share one),
        and a `mkdir` per file costs two system calls more than the file itself."""
        path = self.path(key)
        try:
            path.write_bytes(data)
        except FileNotFoundError:
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
