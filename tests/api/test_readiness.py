"""`/readyz` answers 503 when Postgres or Redis cannot be reached. The app reaches each
through a proxy of its own, and closing the proxy cuts it off, as if that server had gone
away; the servers the other tests share are never stopped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bulkops.config import Settings

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class Proxy:
    """A loopback port forwarding every connection to a server."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect
        self.writers: list[asyncio.StreamWriter] = []
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self.connect()
        self.writers += [writer, up_writer]
        for task in (_pipe(reader, up_writer), _pipe(up_reader, writer)):
            self.pipes.add(asyncio.create_task(task))

    async def close(self) -> None:
        """Refuse new connections and cut the open ones."""
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in self.pipes:
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        self.pipes.clear()


def postgres_proxy(url: str) -> tuple[Proxy, Callable[[int], str]]:
    """A proxy to the database at `url` (unix socket or TCP) and its URL through a port."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    port = parts.port or int(query.get("port", ["5432"])[0])
    if "host" in query:
        path = f"{query['host'][0]}/.s.PGSQL.{port}"
        proxy = Proxy(lambda: asyncio.open_unix_connection(path))
    else:
        host = parts.hostname or "127.0.0.1"
        proxy = Proxy(lambda: asyncio.open_connection(host, port))
    user = parts.username or "postgres"
    return proxy, lambda local: f"postgresql://{user}@127.0.0.1:{local}{parts.path}"


def redis_proxy(url: str) -> tuple[Proxy, Callable[[int], str]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    return Proxy(lambda: asyncio.open_connection(host, port)), (
        lambda local: f"redis://127.0.0.1:{local}{parts.path}"
    )


@pytest.fixture
async def proxies(database_url: str, redis_url: str) -> AsyncIterator[dict[str, tuple[Proxy, str]]]:
    """A proxy to the test's database and one to Redis, with the URLs through them."""
    found = {}
    for name, (proxy, url_for) in {
        "postgres": postgres_proxy(database_url),
        "redis": redis_proxy(redis_url),
    }.items():
        found[name] = (proxy, url_for(await proxy.start()))
    yield found
    for proxy, _ in found.values():
        await proxy.close()


@pytest.fixture
def settings(settings: Settings, proxies: dict[str, tuple[Proxy, str]]) -> Settings:
    """The app's settings: Postgres and Redis reached through the proxies."""
    return settings.model_copy(
        update={"database_url": proxies["postgres"][1], "redis_url": proxies["redis"][1]}
    )


@pytest.mark.parametrize("lost", ["postgres", "redis"])
async def test_readyz_answers_503_while_a_server_cannot_be_reached(
    http: httpx.AsyncClient, proxies: dict[str, tuple[Proxy, str]], lost: str
) -> None:
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}

    await proxies[lost][0].close()
    started = time.monotonic()
    refused = await http.get("/readyz")
    assert refused.status_code == 503
    body = refused.json()
    assert body["ready"] is False
    assert body[lost] != "ok"
    assert body["postgres" if lost == "redis" else "redis"] == "ok"
    assert time.monotonic() - started < 5
    # Liveness does not depend on either: the process itself is fine.
    assert (await http.get("/healthz")).status_code == 200
