"""Helpers the tests share: data factories, a GraphQL client, a subscription client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
import websockets
from arq.connections import ArqRedis

from bulkops.config import Settings
from bulkops.db.pool import create_pool
from bulkops.db.tenants import ensure_tenant, insert_token
from bulkops.operations import REGISTRY, Registry
from bulkops.outside import OutsideCalls
from bulkops.services.auth import hash_token, new_token
from bulkops.services.container import Services
from bulkops.storage import Storage
from bulkops.tasks.runner import WorkerDeps, run_slice
from bulkops.tasks.worker import build_worker


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    token: str


async def make_tenant(owner: asyncpg.Connection, name: str) -> Tenant:
    tenant_id = await ensure_tenant(owner, name)
    token = new_token()
    await insert_token(owner, tenant_id, hash_token(token))
    return Tenant(tenant_id, name, token)


async def make_products(
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    count: int,
    *,
    brand: str = "Acme",
    status: str = "DRAFT",
    sku_prefix: str = "SKU",
    dataset_id: int | None = None,
    with_images: bool = True,
) -> list[int]:
    """Insert `count` products (one image file each, optionally in a dataset); their ids."""
    rows = await owner.fetch(
        """INSERT INTO products (tenant_id, sku, barcode, name, brand, category, status, price)
           SELECT $1, $2 || '-' || lpad(g::text, 7, '0'), lpad((4000000000000 + g)::text, 13, '0'),
                  'Product ' || g, $3, 'Category ' || (g % 5), $4, (g % 100) + 0.99
           FROM generate_series(1, $5) AS g
           ORDER BY g
           RETURNING id""",
        tenant.id,
        sku_prefix,
        brand,
        status,
        count,
    )
    ids = [r["id"] for r in rows]
    if with_images:
        keys = [f"{tenant.id}/images/{i}.svg" for i in ids]
        await owner.execute(
            """INSERT INTO product_images (tenant_id, product_id, storage_key)
               SELECT $1, unnest($2::bigint[]), unnest($3::text[])""",
            tenant.id,
            ids,
            keys,
        )
        await storage.write_many(
            {key: b"<svg xmlns='http://www.w3.org/2000/svg'/>" for key in keys}
        )
    await owner.execute(
        """INSERT INTO product_identifiers (tenant_id, product_id, kind, value)
           SELECT $1, i, 'MPN', 'MPN-' || i FROM unnest($2::bigint[]) AS i""",
        tenant.id,
        ids,
    )
    if dataset_id is not None:
        await owner.execute(
            """INSERT INTO dataset_products (tenant_id, dataset_id, product_id)
               SELECT $1, $2, unnest($3::bigint[])""",
            tenant.id,
            dataset_id,
            ids,
        )
    return ids


async def make_dataset(owner: asyncpg.Connection, tenant: Tenant, name: str) -> int:
    dataset_id: int = await owner.fetchval(
        "INSERT INTO datasets (tenant_id, name) VALUES ($1, $2) RETURNING id", tenant.id, name
    )
    return dataset_id


async def run_worker(settings: Settings, *, operations: Registry = REGISTRY) -> None:
    """Run a worker in burst mode until the queue is empty."""
    worker = build_worker(
        settings, burst=True, handle_signals=False, poll_delay=0.01, operations=operations
    )
    try:
        await worker.main()
    finally:
        await worker.close()


class Runner:
    """The real slice runner, driven one slice at a time as a worker would drive it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> Runner:
        self.pool = await create_pool(
            self.settings.database_url or "", role=self.settings.app_role, min_size=1, max_size=2
        )
        self.redis_client = aioredis.from_url(self.settings.redis_url or "")
        self.redis = ArqRedis(connection_pool=self.redis_client.connection_pool)
        services = Services(
            pool=self.pool,
            redis=self.redis,
            storage=Storage.from_settings(self.settings),
            settings=self.settings,
            outside=OutsideCalls(self.redis, self.settings),
        )
        self.deps = WorkerDeps(services)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.deps.services.outside.aclose()
        await self.pool.close()
        await self.redis_client.aclose()

    async def slice(self, job_id: str, tenant: Tenant) -> str:
        return await run_slice(self.deps, self.redis, job_id, tenant.id)


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        self.http = http
        self.token = token

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def __call__(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        response = await self.post(query, variables)
        body = response.json()
        assert response.status_code == 200, body
        assert "errors" not in body or not body["errors"], body["errors"]
        return body["data"]


class Subscription:
    """A graphql-transport-ws client for one subscription."""

    def __init__(self, ws_url: str, token: str | None) -> None:
        self.ws_url = ws_url
        self.token = token
        self.ws: Any = None

    async def connect(self, init_key: str = "authorization") -> None:
        self.ws = await websockets.connect(self.ws_url, subprotocols=["graphql-transport-ws"])
        payload = {init_key: f"Bearer {self.token}"} if self.token else {}
        await self.ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack

    async def start(self, query: str, variables: dict[str, Any], sub_id: str = "1") -> None:
        await self.ws.send(
            json.dumps(
                {
                    "id": sub_id,
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables},
                }
            )
        )

    async def messages(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Every message until the server completes the subscription (or errors)."""
        received = []
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            received.append(message)
            if message["type"] in ("complete", "error"):
                return received

    async def next(self, timeout: float = 30.0) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message["type"] != "ping":
                return message  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def storage_env(settings: Settings) -> dict[str, str]:
    """The variables that give a `bulkops` process started by a test the test's store."""
    return {
        "BULKOPS_STORAGE_URL": settings.resolved_storage_url,
        "BULKOPS_STORAGE_OPTIONS": json.dumps(settings.storage_options),
    }


def start_bulkops(
    settings: Settings, log: Path, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """`bulkops ARGS` (e.g. `worker`) as a process of its own, on the test's Postgres,
    Redis and store, with `env` added to its environment; its output appended to `log`."""
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        **storage_env(settings),
        **env,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bulkops", *args],
            env=environment,
            cwd=cwd,
            stdout=out,
            stderr=out,
        )


async def stored_names(storage: Storage, prefix: str = "", *, suffix: str = "") -> list[str]:
    """The last segments of the stored keys under `prefix` ending in `suffix`, sorted."""
    return sorted(k.rsplit("/", 1)[-1] for k in await storage.keys(prefix) if k.endswith(suffix))
