"""The `bulkops` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bulkops.config import Settings
from bulkops.db.migrate import apply_migrations
from bulkops.db.tenants import ensure_tenant, insert_token, product_count
from bulkops.dev.embedded import EmbeddedServers, ensure_servers
from bulkops.dev.seed import print_progress, progress_bar, seed_products
from bulkops.domain import JobStatus, Scope
from bulkops.logs import configure_logging
from bulkops.services.auth import Authenticator, hash_token, new_token
from bulkops.storage import LocalStorage

log = logging.getLogger("bulkops")
DEMO_TENANT = "demo"
DEMO_PRODUCTS = 10_000


def _urls_file(settings: Settings) -> Path:
    return settings.data_dir / "urls.json"


def resolve_urls(settings: Settings) -> Settings:
    """Fill in missing URLs from a running `bulkops dev`, or stop with a clear message."""
    if settings.database_url and settings.redis_url:
        return settings
    saved: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(_urls_file(settings).read_text())
    database_url = settings.database_url or saved.get("database_url")
    redis_url = settings.redis_url or saved.get("redis_url")
    if not database_url or not redis_url:
        sys.exit(
            "bulkops: set DATABASE_URL and REDIS_URL, or start `bulkops dev` "
            "(its embedded servers are then used)."
        )
    return settings.model_copy(update={"database_url": database_url, "redis_url": redis_url})


async def _owner(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url
    return await asyncpg.connect(settings.database_url)


async def migrate(settings: Settings) -> None:
    conn = await _owner(settings)
    try:
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}", file=sys.stderr)


async def create_token(settings: Settings, tenant: str, scope: Scope = Scope.ADMIN) -> str:
    conn = await _owner(settings)
    try:
        tenant_id = await ensure_tenant(conn, tenant)
        token = new_token()
        await insert_token(conn, tenant_id, hash_token(token), scope=scope)
    finally:
        await conn.close()
    return token


async def seed(settings: Settings, tenant: str, count: int) -> None:
    conn = await _owner(settings)
    try:
        await seed_products(
            conn,
            LocalStorage(settings.resolved_storage_dir),
            tenant,
            count,
            report=print_progress,
        )
    finally:
        await conn.close()


# Progress messages are a few hundred bytes: compressing each one per connection
# (permessage-deflate) costs more than it saves, and a zlib state per connection.
WEBSOCKETS: dict[str, Any] = {"ws_per_message_deflate": False}


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from bulkops.web.app import create_app

    configure_logging(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, **WEBSOCKETS)


def worker(settings: Settings) -> None:
    from bulkops.tasks.worker import run_forever

    configure_logging(settings)
    asyncio.run(run_forever(settings))


async def _demo_token(settings: Settings) -> str:
    """The demo tenant's token, kept in the data folder so it survives restarts."""
    path = settings.data_dir / "demo-token"
    assert settings.database_url
    if path.exists():
        token = path.read_text().strip()
        from bulkops.db.pool import create_pool

        pool = await create_pool(
            settings.database_url, role=settings.app_role, min_size=1, max_size=1
        )
        try:
            caller = await Authenticator(pool).caller_for(token)
            if caller is not None and caller.may(Scope.ADMIN):
                return token
        finally:
            await pool.close()
    token = await create_token(settings, DEMO_TENANT)
    path.write_text(token + "\n")
    return token


async def _dev(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from bulkops.tasks.worker import build_worker
    from bulkops.web.app import create_app

    await migrate(settings)
    token = await _demo_token(settings)
    conn = await _owner(settings)
    try:
        existing = await product_count(conn, DEMO_TENANT)
    finally:
        await conn.close()
    if existing == 0:
        await seed(settings, DEMO_TENANT, DEMO_PRODUCTS)
    url = f"http://{host}:{port}"
    print(
        f"""
bulkops is running.
  Dashboard  {url}/dashboard#token={token}
  GraphiQL   {url}/graphql#token={token}
  GraphQL    POST {url}/graphql   (websocket: ws://{host}:{port}/graphql)
  Token      {token}
  Postgres   {settings.database_url}
  Redis      {settings.redis_url}
Try: curl -s {url}/graphql -H 'Authorization: Bearer {token}' \\
       -H 'Content-Type: application/json' -d '{{"query": "{{ operations {{ name }} }}"}}'
Press Ctrl+C to stop.
""",
        flush=True,
    )
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, log_config=None, **WEBSOCKETS
    )
    server = uvicorn.Server(config)
    arq_worker = build_worker(settings, handle_signals=False)
    worker_task = asyncio.create_task(arq_worker.async_run())
    try:
        await server.serve()
    finally:
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        await arq_worker.close()


def dev(settings: Settings, host: str, port: int) -> None:
    settings = settings.model_copy(update={"dev": True})
    configure_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    servers: EmbeddedServers = ensure_servers(
        settings.database_url, settings.redis_url, settings.data_dir
    )
    settings = settings.model_copy(
        update={"database_url": servers.database_url, "redis_url": servers.redis_url}
    )
    _urls_file(settings).write_text(
        json.dumps({"database_url": settings.database_url, "redis_url": settings.redis_url})
    )
    try:
        asyncio.run(_dev(settings, host, port))
    except KeyboardInterrupt:
        pass
    finally:
        _urls_file(settings).unlink(missing_ok=True)
        servers.stop()


class _TooManyRequests(Exception):
    """The API refused for now: HTTP 429 (with its Retry-After, if any) or close code 4429."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


# The pauses of `watch` when the API gives no Retry-After: doubling up to this.
WATCH_MAX_PAUSE = 60.0


async def watch(
    url: str,
    token: str,
    job_id: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Print a live progress bar for a job from the `job` subscription. Over the tenant's
    rate limit, wait (the API's Retry-After, else a doubling pause) and subscribe again: the
    subscription starts with the job's current state, so nothing is missed."""
    pause = 1.0
    while True:
        try:
            return await _watch_once(url, token, job_id)
        except _TooManyRequests as exc:
            wait = exc.retry_after if exc.retry_after is not None else pause
            print(f"\nbulkops watch: too many requests, again in {wait:.0f} s", file=sys.stderr)
            await sleep(wait)
            pause = min(pause * 2, WATCH_MAX_PAUSE)


async def _watch_once(url: str, token: str, job_id: str) -> int:
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    try:
        return await _follow(url, token, job_id)
    except InvalidStatus as exc:
        if exc.response.status_code != 429:
            raise
        retry_after = exc.response.headers.get("Retry-After", "")
        raise _TooManyRequests(int(retry_after) if retry_after.isdigit() else None) from exc
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        if code == 4429:
            raise _TooManyRequests(None) from exc
        if code == 4403:
            print("bulkops: the token was refused", file=sys.stderr)
            return 2
        raise


async def _follow(url: str, token: str, job_id: str) -> int:
    import websockets
    from websockets.typing import Subprotocol

    ws_url = url.replace("http://", "ws://").replace("https://", "wss://") + "/graphql"
    query = (
        "subscription($id: ID!) { job(id: $id) { status processed total failed progress "
        "itemsPerSecond etaSeconds } }"
    )
    async with websockets.connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            print("bulkops: the token was refused", file=sys.stderr)
            return 2
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": {"id": job_id}},
                }
            )
        )
        status = "UNKNOWN"
        async for raw in ws:
            message: dict[str, Any] = json.loads(raw)
            if message["type"] == "next":
                if message["payload"].get("errors"):
                    print(f"\n{message['payload']['errors'][0]['message']}", file=sys.stderr)
                    return 1
                job = message["payload"]["data"]["job"]
                status = job["status"]
                rate = f" {job['itemsPerSecond']:.0f}/s" if job["itemsPerSecond"] else ""
                eta = f" eta {job['etaSeconds']:.0f}s" if job["etaSeconds"] else ""
                sys.stderr.write(
                    progress_bar(job["processed"], job["total"], label=f"{status:<10} ")
                    + f"{rate}{eta} failed {job['failed']}   "
                )
                sys.stderr.flush()
            elif message["type"] in ("complete", "error"):
                break
        sys.stderr.write("\n")
        print(status)
        return 0 if status in (JobStatus.SUCCEEDED, JobStatus.PARTIAL) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulkops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dev", help="embedded servers, migrations, demo data, API and a worker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p = sub.add_parser("serve", help="run the API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    sub.add_parser("worker", help="run one worker")
    sub.add_parser("migrate", help="apply pending migrations")
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    p = token.add_parser("create", help="print a new token for a tenant (created if needed)")
    p.add_argument("--tenant", required=True)
    p.add_argument(
        "--scope",
        choices=[scope.value for scope in Scope],
        default=Scope.ADMIN.value,
        help="read: queries, subscriptions, downloads; write: also bulk mutations and job "
        "actions; admin (default): everything",
    )
    p = sub.add_parser("seed", help="add realistic products to a tenant")
    p.add_argument("--tenant", required=True)
    p.add_argument("--products", type=int, required=True)
    p = sub.add_parser("watch", help="a live progress bar for a job")
    p.add_argument("job_id")
    p.add_argument("--url", default=None, help="the API's base URL")
    p.add_argument("--token", default=None, help="bearer token (or BULKOPS_TOKEN)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    if args.command == "dev":
        dev(settings, args.host, args.port)
        return
    if args.command == "watch":
        token = args.token or (settings.token.get_secret_value() if settings.token else None)
        if not token:
            sys.exit("bulkops watch: give --token or set BULKOPS_TOKEN")
        sys.exit(asyncio.run(watch(args.url or settings.public_url, token, args.job_id)))
    settings = resolve_urls(settings)
    if args.command == "serve":
        serve(settings, args.host, args.port)
    elif args.command == "worker":
        worker(settings)
    elif args.command == "migrate":
        asyncio.run(migrate(settings))
    elif args.command == "token":
        print(asyncio.run(create_token(settings, args.tenant, Scope(args.scope))))
    elif args.command == "seed":
        if args.products < 1:
            sys.exit("bulkops seed: --products must be at least 1")
        asyncio.run(seed(settings, args.tenant, args.products))
