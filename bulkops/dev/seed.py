"""Realistic demo products: set-based inserts in chunks, one stored image each."""

from __future__ import annotations

import sys
from collections.abc import Callable

import asyncpg

from bulkops.db import seed as seed_db
from bulkops.db.tenants import ensure_tenant
from bulkops.storage import Storage

CHUNK = 10_000

_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' width='120' height='120'>"
    "<rect width='120' height='120' fill='#e8eef7'/>"
    "<text x='60' y='64' font-size='12' text-anchor='middle'>{sku}</text></svg>"
)


def progress_bar(done: int, total: int, *, label: str = "", width: int = 30) -> str:
    share = done / total if total else 1.0
    filled = int(share * width)
    return f"\r{label}[{'#' * filled}{'.' * (width - filled)}] {share:6.1%} {done}/{total}"


async def seed_products(
    conn: asyncpg.Connection,
    storage: Storage,
    tenant_name: str,
    count: int,
    *,
    report: Callable[[int, int], None] | None = None,
) -> int:
    """Add `count` products to the tenant, with identifiers, an image file each, about a
    third of them in the dataset "Featured" and a tenth in "Clearance". Returns the count."""
    tenant_id = await ensure_tenant(conn, tenant_name)
    featured = await seed_db.ensure_dataset(conn, tenant_id, "Featured")
    clearance = await seed_db.ensure_dataset(conn, tenant_id, "Clearance")
    start = await seed_db.last_demo_number(conn, tenant_id)
    done = 0
    while done < count:
        size = min(CHUNK, count - done)
        first = start + done + 1
        async with conn.transaction():
            skus = await seed_db.insert_demo_products(
                conn,
                tenant_id,
                first=first,
                last=first + size - 1,
                featured=featured,
                clearance=clearance,
            )
            await storage.write_many(
                {seed_db.image_key(tenant_id, sku): _SVG.format(sku=sku).encode() for sku in skus}
            )
        done += size
        if report is not None:
            report(done, count)
    return count


def print_progress(done: int, total: int) -> None:
    sys.stderr.write(progress_bar(done, total, label="seeding "))
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()
