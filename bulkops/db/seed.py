"""The demo catalog's inserts (`bulkops seed`, `bulkops dev`): set-based, a chunk of
generated products at a time, with their images, identifiers and dataset memberships."""

from __future__ import annotations

import asyncpg


async def ensure_dataset(conn: asyncpg.Connection, tenant_id: str, name: str) -> int:
    """The tenant's dataset called `name`, made if missing."""
    dataset_id: int = await conn.fetchval(
        """INSERT INTO datasets (tenant_id, name) VALUES ($1, $2)
           ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
        tenant_id,
        name,
    )
    return dataset_id


async def last_demo_number(conn: asyncpg.Connection, tenant_id: str) -> int:
    """The highest number of the tenant's demo SKUs (SKU-00000042 is 42), 0 without any:
    new demo products are numbered after it, so seeding again after deletions never reuses
    a SKU or barcode."""
    last: int = await conn.fetchval(
        """SELECT coalesce(max(substring(sku FROM '^SKU-([0-9]{1,18})$')::bigint), 0)
           FROM products WHERE tenant_id = $1""",
        tenant_id,
    )
    return last


async def insert_demo_products(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    first: int,
    last: int,
    featured: int,
    clearance: int,
) -> list[str]:
    """Products number `first` to `last` (SKU-00000001, …) with an image row, an MPN each,
    every third in `featured` and every tenth in `clearance`; their SKUs, in order. Call
    inside a transaction."""
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
        last,
    )
    ids = [r["id"] for r in rows]
    skus: list[str] = [r["sku"] for r in rows]
    await conn.execute(
        """INSERT INTO product_images (tenant_id, product_id, storage_key)
           SELECT $1, unnest($2::bigint[]), unnest($3::text[])""",
        tenant_id,
        ids,
        [image_key(tenant_id, sku) for sku in skus],
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
        featured,
        ids,
        clearance,
    )
    return skus


def image_key(tenant_id: str, sku: str) -> str:
    """Where a demo product's image file is stored."""
    return f"{tenant_id}/images/{sku}.svg"
