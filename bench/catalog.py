"""The catalog every workload runs against: a seeded template database built once, and a
fresh copy of it (and of its stored files) for every run that changes it.

The catalog is BENCHMARKS.md's: `plan.products` products of the tenant `bench` (seeded by
bulkops.dev.seed: each with an image row and an identifier, a third in "Featured", a tenth in
"Clearance"), and half of them in a dataset "Half" besides. W9's twenty small tenants have
`plan.tenant_products` products each.

Stored files: creating and removing files is slow here (about 130 us to write and 330 us to
unlink one, on this machine's disk, for a few milliseconds per 5,000-row batch), and only
deleteProducts ever touches them, so files exist for exactly the 100,000 products W1
deletes, written afresh for each of its runs; every other image row names a file that is
not there, which nothing in the benchmarks reads.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.plan import Plan
from bulkops.config import Settings
from bulkops.db.migrate import apply_migrations
from bulkops.db.tenants import insert_token
from bulkops.dev.seed import print_progress, seed_products
from bulkops.services.auth import hash_token, new_token
from bulkops.storage import Storage

WORK_DB = "bulkops_bench"
TEMPLATE_DB = "bulkops_bench_seeded"
TENANT = "bench"
SETTLED_KB = 32_000
SETTLE_TIMEOUT = 180.0
SVG = "<svg xmlns='http://www.w3.org/2000/svg' width='120' height='120'><text>{key}</text></svg>"


class BenchError(RuntimeError):
    """The benchmark could not measure what it claims to measure."""


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    token: str


@dataclass(frozen=True)
class Catalog:
    """The servers, the seeded template and what the workloads select from it."""

    admin_url: str
    redis_url: str
    data: Path
    tenant: Tenant
    small_tenants: tuple[Tenant, ...]
    # W1/W10 delete these (every tenth product); W3 adds these (another tenth) to
    # `dataset_id`, which already holds a tenth of them.
    delete_ids: tuple[int, ...]
    add_ids: tuple[int, ...]
    dataset_id: int
    # W2 sets the status of every ARCHIVED product (a tenth of the catalog).
    archived: int
    products: int

    @property
    def work_url(self) -> str:
        return with_database(self.admin_url, WORK_DB)

    def save(self, plan: Plan) -> None:
        """Remember the catalog next to its servers' data (for --reuse)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("admin_url", "redis_url")}
        fields.update(plan=plan.name, data=str(self.data))
        (self.data / "catalog.json").write_text(json.dumps(fields))

    @classmethod
    def load(cls, admin_url: str, redis_url: str, data: Path, plan: Plan) -> Catalog | None:
        """The catalog a run with --keep-data left in `data`, if it was built for `plan`."""
        try:
            fields = json.loads((data / "catalog.json").read_text())
        except (OSError, ValueError):
            return None
        if fields.pop("plan") != plan.name:
            return None
        fields.update(
            admin_url=admin_url,
            redis_url=redis_url,
            data=data,
            tenant=Tenant(**fields["tenant"]),
            small_tenants=tuple(Tenant(**t) for t in fields["small_tenants"]),
            delete_ids=tuple(fields["delete_ids"]),
            add_ids=tuple(fields["add_ids"]),
        )
        return cls(**fields)

    @property
    def file_keys(self) -> Path:
        """The storage keys of the files that exist, one a line."""
        return self.data / "stored-files.txt"

    @property
    def run_files(self) -> Path:
        return self.data / "files"


def with_database(url: str, name: str) -> str:
    """`url` with its path replaced by `/name` (the ?host= query is kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def connect_app(url: str) -> asyncpg.Connection:
    """A connection acting as the service's role: row-level security applies to it."""
    role = Settings().app_role
    conn: asyncpg.Connection = await asyncpg.connect(url, server_settings={"role": role})
    return conn


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Unstored(Storage):
    """Seeds image rows without writing their files (the files are written afterwards,
    for the products that are deleted)."""

    async def write_many(self, files: Mapping[str, bytes]) -> None:
        return None


async def recreate_database(admin_url: str, name: str, *, template: str | None = None) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if template is None:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            # FILE_COPY copies the files and checkpoints; WAL_LOG would write the whole
            # catalog to the WAL, which a measurement would then pay for.
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    finally:
        await conn.close()


async def _token(conn: asyncpg.Connection, tenant_id: str, name: str) -> Tenant:
    token = new_token()
    await insert_token(conn, tenant_id, hash_token(token))
    return Tenant(id=tenant_id, name=name, token=token)


async def _every_tenth(conn: asyncpg.Connection, tenant_id: str, offset: int) -> list[int]:
    """Every tenth product of the tenant in id order, starting at position `offset`."""
    rows = await conn.fetch(
        """SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
                           FROM products WHERE tenant_id = $1) s
           WHERE n % 10 = $2 ORDER BY id""",
        tenant_id,
        offset,
    )
    return [r["id"] for r in rows]


async def _add_to_new_dataset(
    conn: asyncpg.Connection, tenant_id: str, name: str, ids_sql: str, *args: object
) -> int:
    dataset_id: int = await conn.fetchval(
        "INSERT INTO datasets (tenant_id, name) VALUES ($1, $2) RETURNING id", tenant_id, name
    )
    await conn.execute(
        f"""INSERT INTO dataset_products (tenant_id, dataset_id, product_id)
            SELECT $1, $2, id FROM ({ids_sql}) AS chosen ORDER BY id""",
        tenant_id,
        dataset_id,
        *args,
    )
    return dataset_id


def write_files(root: Path, keys: list[str]) -> None:
    """One small SVG per key under `root` (written, not copied: copying is slower)."""
    made: set[Path] = set()
    for key in keys:
        path = root / key
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(SVG.format(key=key).encode())


async def build_catalog(admin_url: str, redis_url: str, data: Path, plan: Plan) -> Catalog:
    """Migrate and seed the work database once, then keep it as the template of every run."""
    started = time.perf_counter()
    await recreate_database(admin_url, WORK_DB)
    conn = await asyncpg.connect(with_database(admin_url, WORK_DB))
    try:
        await apply_migrations(conn)
        unstored = _Unstored.from_url((data / "unstored").resolve().as_uri())
        report = print_progress if plan.products >= 100_000 else None
        await seed_products(conn, unstored, TENANT, plan.products, report=report)
        tenant_id = str(await conn.fetchval("SELECT id FROM tenants WHERE name = $1", TENANT))
        numbered = (
            "SELECT id, row_number() OVER (ORDER BY id) AS n FROM products WHERE tenant_id = $1"
        )
        await _add_to_new_dataset(
            conn, tenant_id, "Half", f"SELECT id FROM ({numbered}) s WHERE (n / 10) % 2 = 0"
        )
        delete_ids = await _every_tenth(conn, tenant_id, 5)
        add_ids = await _every_tenth(conn, tenant_id, 7)
        dataset_id = await _add_to_new_dataset(
            conn,
            tenant_id,
            "Bench W3",
            "SELECT id FROM unnest($3::bigint[]) WITH ORDINALITY AS a(id, k) WHERE k % 10 = 1",
            add_ids,
        )
        archived = await conn.fetchval(
            "SELECT count(*) FROM products WHERE tenant_id = $1 AND status = 'ARCHIVED'", tenant_id
        )
        tenant = await _token(conn, tenant_id, TENANT)
        small: list[Tenant] = []
        for i in range(1, plan.tenants + 1):
            name = f"{TENANT}-{i:02d}"
            await seed_products(conn, unstored, name, plan.tenant_products)
            small_id = str(await conn.fetchval("SELECT id FROM tenants WHERE name = $1", name))
            small.append(await _token(conn, small_id, name))
        keys = [
            r["storage_key"]
            for r in await conn.fetch(
                "SELECT storage_key FROM product_images WHERE product_id = ANY($1::bigint[])",
                delete_ids,
            )
        ]
        # A settled catalog: statistics and visibility map, as a live one would have.
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    (data / "stored-files.txt").write_text("\n".join(keys) + "\n")
    await recreate_database(admin_url, TEMPLATE_DB, template=WORK_DB)
    catalog = Catalog(
        admin_url=admin_url,
        redis_url=redis_url,
        data=data,
        tenant=tenant,
        small_tenants=tuple(small),
        delete_ids=tuple(delete_ids),
        add_ids=tuple(add_ids),
        dataset_id=dataset_id,
        archived=int(archived),
        products=plan.products,
    )
    catalog.save(plan)
    log(
        f"catalog: {plan.products:,} products, {len(small)} small tenants, {len(keys):,} stored "
        f"files, built in {time.perf_counter() - started:.0f} s"
    )
    return catalog


async def migrate_template(admin_url: str) -> list[str]:
    """Apply to a reused catalog's template the migrations added since it was seeded (the
    service's code expects them); return their names."""
    conn = await asyncpg.connect(with_database(admin_url, TEMPLATE_DB))
    try:
        return [m.name for m in await apply_migrations(conn)]
    finally:
        await conn.close()


async def fresh_copy(catalog: Catalog, *, files: bool) -> None:
    """The work database (and, if asked, the stored files) as they were after seeding,
    flushed to disk so that no measurement pays for the copy's writes."""
    await recreate_database(catalog.admin_url, WORK_DB, template=TEMPLATE_DB)
    if catalog.run_files.exists():
        shutil.rmtree(catalog.run_files)
    catalog.run_files.mkdir(parents=True)
    if files:
        write_files(catalog.run_files, catalog.file_keys.read_text().split())
    settle_disk()


def count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def _pending_writeback_kb() -> int:
    """Dirty and under-writeback page cache (Linux); 0 where it cannot be read."""
    total = 0
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith(("Dirty:", "Writeback:")):
                    total += int(line.split()[1])
    except OSError:
        return 0
    return total


def settle_disk() -> float:
    """Flush everything written so far and wait for writeback to drain; seconds waited."""
    started = time.monotonic()
    os.sync()
    while _pending_writeback_kb() > SETTLED_KB and time.monotonic() - started < SETTLE_TIMEOUT:
        time.sleep(0.2)
    return time.monotonic() - started
