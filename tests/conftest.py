"""Real PostgreSQL, Valkey and S3 for every test: embedded servers unless URLs are given
(BULKOPS_TEST_DATABASE_URL, BULKOPS_TEST_REDIS_URL, BULKOPS_TEST_STORAGE_URL with the
store's standard credential variables). A template database is migrated once; each test
gets its own copy, an empty Redis database and its own prefix in the store."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn

from bulkops.config import Settings
from bulkops.db.migrate import apply_migrations
from bulkops.dev.embedded import EmbeddedServers, ensure_servers
from bulkops.operations import REGISTRY, Registry
from bulkops.storage import Storage
from bulkops.web.app import create_app
from tests.quick_postgres import CREATE_STRATEGY, skip_disk_waits
from tests.serving import QuickServer
from tests.support import GraphQLClient, Tenant, make_tenant

ROOT = Path(__file__).resolve().parent.parent
# Several test sessions may share the embedded server: every name carries this pid.
TEMPLATE = f"bulkops_tmpl_{os.getpid()}"
_counter = itertools.count()
# The embedded server's databases are quickest copied as files (tests/quick_postgres.py).
EMBEDDED = os.environ.get("BULKOPS_TEST_DATABASE_URL") is None
STRATEGY = f" STRATEGY {CREATE_STRATEGY}" if EMBEDDED else ""
# One TLS context for every test's client: httpx would load the certificate authorities
# again for each (the clients talk plain HTTP to loopback anyway).
TLS = httpx.create_ssl_context()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _build_template(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname ~ '^bulkops_(test|tmpl)_[0-9]+'"
        )
        for row in rows:
            owner_pid = int(row["datname"].split("_")[2])
            if owner_pid == os.getpid() or not _alive(owner_pid):
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(admin_url, TEMPLATE))
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def servers() -> Iterator[EmbeddedServers]:
    found = ensure_servers(
        os.environ.get("BULKOPS_TEST_DATABASE_URL"),
        os.environ.get("BULKOPS_TEST_REDIS_URL"),
        ROOT / ".pytest-data",
        persist=False,
        storage_url=os.environ.get("BULKOPS_TEST_STORAGE_URL"),
    )
    assert found.database_url is not None
    if EMBEDDED:
        asyncio.run(skip_disk_waits(found.database_url))
    asyncio.run(_build_template(found.database_url))
    yield found
    found.stop()


@pytest.fixture
async def database_url(servers: EmbeddedServers) -> AsyncIterator[str]:
    assert servers.database_url is not None
    name = f"bulkops_test_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}{STRATEGY}")
    finally:
        await admin.close()
    yield with_database(servers.database_url, name)
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def redis_url(servers: EmbeddedServers) -> str:
    assert servers.redis_url is not None
    client = aioredis.from_url(servers.redis_url)
    await client.flushdb()
    await client.aclose()
    return servers.redis_url


@pytest.fixture
def settings(
    database_url: str, redis_url: str, tmp_path: Path, servers: EmbeddedServers
) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        # Each test its own folder of the one store.
        storage_url=f"{(servers.storage_url or '').rstrip('/')}/{tmp_path.name}",
        storage_options=servers.storage_options,
        data_dir=tmp_path,
        dev=True,
        slice_seconds=5.0,
        publish_interval=0.0,
        subscription_recheck_seconds=1.0,
        pool_min_size=1,
        pool_max_size=5,
    )


@pytest.fixture
def storage(settings: Settings) -> Storage:
    return Storage.from_settings(settings)


@pytest.fixture
async def owner(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the database owner, for setting up data and checking results."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def tenant(owner: asyncpg.Connection) -> Tenant:
    return await make_tenant(owner, "acme")


@pytest.fixture
async def other_tenant(owner: asyncpg.Connection) -> Tenant:
    return await make_tenant(owner, "globex")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def operations() -> Registry:
    """The operations the app serves; a test module overrides it to add its own."""
    return REGISTRY


@pytest.fixture
async def server(settings: Settings, operations: Registry) -> AsyncIterator[str]:
    """The real app served by uvicorn on a loopback port; yields its base URL."""
    port = _free_port()
    app = create_app(settings, operations=operations)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = QuickServer(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    yield f"http://127.0.0.1:{port}"
    srv.stop()
    done, _ = await asyncio.wait({task}, timeout=5)
    if not done:
        srv.force_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30, verify=TLS) as client:
        yield client


@pytest.fixture
def gql(http: httpx.AsyncClient, tenant: Tenant) -> GraphQLClient:
    return GraphQLClient(http, tenant.token)


@pytest.fixture
def ws_url(server: str) -> str:
    return server.replace("http://", "ws://") + "/graphql"
