"""What `bulkops dev` makes sure of before it starts anything: the data folder is its alone,
and the port it is to serve on is free."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from bulkops.errors import BulkopsError

LOCK_FILE = "dev.lock"


class DataDirInUse(BulkopsError):
    """Another `bulkops dev` is using this data folder."""


class PortInUse(BulkopsError):
    """The port is already in use."""


@contextlib.contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data folder while the block runs, or raise
    `DataDirInUse` at once, having changed nothing, when another process holds it.

    The lock is the operating system's (`flock`), so it goes with the process however that
    ends, and a lock file left behind by a killed instance never blocks the next one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    # Opened without truncating: the holder's pid in it must survive a refused attempt.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise DataDirInUse(
                f"another `bulkops dev`{by} is using {data_dir}; stop it first, "
                "or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def check_port_free(host: str, port: int) -> None:
    """Raise `PortInUse` when nothing could listen on `host:port` now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # As uvicorn binds: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "stop what uses it, or give --port"
            ) from None
