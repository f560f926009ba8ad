"""Realistic demo products: set-based inserts in chunks, one stored image each."""

from __future__ import annotations

import sys
from collections.abc import Callable

import asyncpg

from bulkops.db.tenants import ensure_tenant
from bulkops.storage import LocalStorage

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
    storage: LocalStorage,
    tenant_name: str,
    count: int,
    *,
    report: Callable[[int, int], None] | None = None,
) -> int:
    """Add `count` products to the tenant, with identifiers, an image file each, about a
    third of them in the dataset "Featured" and a tenth in "Clearance". Returns the count."""
    tenant_id = await ensure_tenant(conn, tenant_name)
    datasets = []
    for name in ("Featured", "Clearance"):
        dataset_id = await conn.fetchval(
            """INSERT INTO datasets (tenant_id, name) VALUES ($1, $2)
               ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
            tenant_id,
            name,
        )
        datasets.append(dataset_id)
    start = await conn.fetchval("SELECT count(*) FROM products WHERE tenant_id = $1", tenant_id)
    done = 0
    while done < count:
        size = min(CHUNK, count - done)
        first = start + done + 1
        async with conn.transaction():
            rows = await conn.fetch(
                """INSERT INTO products (tenant_id, sku, barcode, name, brand, category, status,
                                         price, attributes)
                   SELECT $1,
                          'SKU-' || lpad(n::text, 8, '0'),
                          '20' || lpad(n::text, 11, '0'),
                          (ARRAY['Classic', 'Organic', 'Premium', 'Everyday', 'Family',
                                 'Mini', 'Deluxe', 'Fresh', 'Light', 'Original'])[1 + n % 10]
                            || ' ' ||
                          (ARRAY['Coffee Beans', 'Green Tea', 'Oat Biscuits', 'Olive Oil',
                                 'Pasta', 'Tomato Sauce', 'Dark Chocolate', 'Granola',
                                 'Sparkling Water', 'Peanut Butter', 'Rice', 'Honey']
                          )[1 + (n / 10) % 12] || ' ' || (100 + n % 900) || 'g',
                          (ARRAY['Acme', 'Zeta', 'Northwind', 'Contoso', 'Globex', 'Initech',
                                 'Umbrella', 'Hooli'])[1 + n % 8],
                          (ARRAY['Pantry', 'Beverages', 'Snacks', 'Breakfast',
                                 'Condiments'])[1 + n % 5],
                          CASE WHEN n % 10 < 7 THEN 'ACTIVE'
                               WHEN n % 10 < 9 THEN 'DRAFT' ELSE 'ARCHIVED' END,
                          round((1 + (n * 37) % 2000 / 100.0)::numeric, 2),
                          jsonb_build_object('origin', (ARRAY['IT', 'DE', 'FR', 'ES'])[1 + n % 4])
                   FROM generate_series($2::bigint, $3::bigint) AS n
                   ORDER BY n
                   RETURNING id, sku""",
                tenant_id,
                first,
                first + size - 1,
            )
            ids = [r["id"] for r in rows]
            keys = [f"{tenant_id}/images/{r['sku']}.svg" for r in rows]
            await conn.execute(
                """INSERT INTO product_images (tenant_id, product_id, storage_key)
                   SELECT $1, unnest($2::bigint[]), unnest($3::text[])""",
                tenant_id,
                ids,
                keys,
            )
            await conn.execute(
                """INSERT INTO product_identifiers (tenant_id, product_id, kind, value)
                   SELECT $1, i, 'MPN', 'MPN-' || i FROM unnest($2::bigint[]) AS i""",
                tenant_id,
                ids,
            )
            await conn.execute(
                """INSERT INTO dataset_products (tenant_id, dataset_id, product_id)
                   SELECT $1::uuid, $2::bigint, i FROM unnest($3::bigint[]) AS i WHERE i % 3 = 0
                   UNION ALL
                   SELECT $1::uuid, $4::bigint, i FROM unnest($3::bigint[]) AS i
                   WHERE i % 10 = 0""",
                tenant_id,
                datasets[0],
                ids,
                datasets[1],
            )
            for key, row in zip(keys, rows, strict=True):
                storage.write(key, _SVG.format(sku=row["sku"]).encode())
        done += size
        if report is not None:
            report(done, count)
    return count


def print_progress(done: int, total: int) -> None:
    sys.stderr.write(progress_bar(done, total, label="seeding "))
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()
