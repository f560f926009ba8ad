"""importProducts' batch step in SQL: read and check a batch of staged rows, lock the
products they name, find who holds their unique identifiers, then upsert the good rows
with one INSERT ... ON CONFLICT and their identifiers with another.

Every statement is driven by the batch's keys given as arrays (staged row ids, SKUs,
identifier values, and the locked products' values), so that no plan has to join the
tenant's catalog; the lookups by key still rely on statistics that know roughly how many
products the tenant has (see refresh_statistics)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import asyncpg

MAX_TEXT_LENGTH = 255
MAX_NAME_LENGTH = 1000
MAX_DESCRIPTION_LENGTH = 100_000
MAX_KIND_LENGTH = 64
# products.price is numeric(12, 2).
MAX_PRICE = Decimal("9999999999.99")
STATUSES = ("DRAFT", "ACTIVE", "ARCHIVED")


class StagedRow(NamedTuple):
    """A staged row of the batch: its key, what identifies its product, its identifiers
    of the unique kinds as (KIND, value, column), and the first of its values that cannot
    be imported whatever the catalog holds (a check's name, the column, details for the
    message), if any. (A named tuple: a batch makes thousands of them, and a frozen
    dataclass costs several times as much to make.)"""

    id: int
    row: int
    sku: str | None
    has_name: bool
    unique_identifiers: tuple[tuple[str, str, str], ...]
    failure: tuple[str | None, ...] | None


@dataclass(frozen=True)
class Product:
    """A product a batch names, as it is (locked until the batch's transaction ends)."""

    id: int
    name: str
    barcode: str | None
    brand: str | None
    category: str | None
    description: str | None
    status: str
    price: Decimal | None
    attributes: dict[str, Any]


class Upserted(NamedTuple):
    id: int
    sku: str
    created: bool


# The checks that need nothing but the row, in the order of its columns. Lengths are
# bounded because sku, barcode, brand, category and identifier values are indexed.
_ROWS = f"""
SELECT s.id, s.row_number, s.sku, s.name IS NOT NULL AS has_name,
       NULLIF(s.identifiers, '[]')::text AS identifiers,
       CASE
  WHEN s.error_code IS NOT NULL
    THEN ARRAY['staged', s.error_column, s.error_code, s.error_message]
  WHEN s.sku IS NULL THEN ARRAY['missing', 'sku']
  WHEN length(s.sku) > {MAX_TEXT_LENGTH} THEN ARRAY['too_long', 'sku', '{MAX_TEXT_LENGTH}']
  WHEN length(s.name) > {MAX_NAME_LENGTH} THEN ARRAY['too_long', 'name', '{MAX_NAME_LENGTH}']
  WHEN length(s.barcode) > {MAX_TEXT_LENGTH}
    THEN ARRAY['too_long', 'barcode', '{MAX_TEXT_LENGTH}']
  WHEN length(s.brand) > {MAX_TEXT_LENGTH} THEN ARRAY['too_long', 'brand', '{MAX_TEXT_LENGTH}']
  WHEN length(s.category) > {MAX_TEXT_LENGTH}
    THEN ARRAY['too_long', 'category', '{MAX_TEXT_LENGTH}']
  WHEN length(s.description) > {MAX_DESCRIPTION_LENGTH}
    THEN ARRAY['too_long', 'description', '{MAX_DESCRIPTION_LENGTH}']
  WHEN s.status <> ALL($2::text[]) THEN ARRAY['status', 'status', s.status]
  WHEN s.price IS NOT NULL AND NOT pg_input_is_valid(s.price, 'numeric')
    THEN ARRAY['price_number', 'price', s.price]
  WHEN s.price::numeric = 'NaN' THEN ARRAY['price_number', 'price', s.price]
  WHEN s.price::numeric < 0 THEN ARRAY['price_negative', 'price', s.price]
  WHEN s.price::numeric > {MAX_PRICE} THEN ARRAY['price_max', 'price', s.price]
  WHEN s.price::numeric <> round(s.price::numeric, 2)
    THEN ARRAY['price_scale', 'price', s.price]
  WHEN s.attributes IS NOT NULL AND NOT pg_input_is_valid(s.attributes, 'jsonb')
    THEN ARRAY['attributes_json', 'attributes']
  WHEN jsonb_typeof(s.attributes::jsonb) <> 'object'
    THEN ARRAY['attributes_object', 'attributes', jsonb_typeof(s.attributes::jsonb)]
  ELSE (
    SELECT ARRAY[x.problem, x.col, x.kind] FROM (
      SELECT i.e->>0 AS kind, i.e->>2 AS col, i.n,
             CASE WHEN i.e->>0 = '' THEN 'identifier_kind_blank'
                  WHEN i.e->>0 = 'BARCODE' THEN 'identifier_barcode'
                  WHEN length(i.e->>0) > {MAX_KIND_LENGTH} THEN 'identifier_kind_long'
                  WHEN length(i.e->>1) > {MAX_TEXT_LENGTH} THEN 'identifier_value_long'
             END AS problem
      FROM jsonb_array_elements(s.identifiers) WITH ORDINALITY AS i(e, n)) x
    WHERE x.problem IS NOT NULL ORDER BY x.n LIMIT 1)
END AS failure
FROM import_rows s
WHERE s.id = ANY($1::bigint[]) AND s.tenant_id = current_tenant_id()
ORDER BY s.id"""


async def staged_rows(
    conn: asyncpg.Connection, ids: Sequence[int], unique_kinds: Collection[str]
) -> list[StagedRow]:
    """The batch's staged rows, in row order, each checked on its own, with their
    identifiers of `unique_kinds` (the others are written from the staged rows by
    `set_identifiers`, and never pass through here)."""
    rows = await conn.fetch(_ROWS, list(ids), list(STATUSES))
    quoted = [json.dumps(kind) for kind in unique_kinds]
    return [
        StagedRow(
            r[0],
            r[1],
            r[2],
            r[3],
            _unique(r[4], unique_kinds, quoted),
            tuple(r[5]) if r[5] else None,
        )
        for r in rows
    ]


def _unique(
    text: str | None, kinds: Collection[str], quoted: Sequence[str]
) -> tuple[tuple[str, str, str], ...]:
    """The (KIND, value, column) of a staged row's identifiers (JSON text) whose kind is
    one of `kinds`; the text is only parsed when it names one of them at all."""
    if text is None or not any(q in text for q in quoted):
        return ()
    return tuple((kind, value, column) for kind, value, column in json.loads(text) if kind in kinds)


async def lock_products(conn: asyncpg.Connection, skus: Sequence[str]) -> dict[str, Product]:
    """The products with these SKUs, by SKU, locked in id order."""
    rows = await conn.fetch(
        """SELECT id, sku, name, barcode, brand, category, description, status, price,
                  attributes
           FROM products
           WHERE tenant_id = current_tenant_id() AND sku = ANY($1::text[])
           ORDER BY id FOR UPDATE""",
        list(skus),
    )
    return {
        r["sku"]: Product(
            r["id"],
            r["name"],
            r["barcode"],
            r["brand"],
            r["category"],
            r["description"],
            r["status"],
            r["price"],
            r["attributes"],
        )
        for r in rows
    }


async def identifier_holders(
    conn: asyncpg.Connection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str]]:
    """Which product (id, SKU) holds each (kind, value) of `pairs`, for those held."""
    if not pairs:
        return {}
    wanted = set(pairs)
    rows = await conn.fetch(
        """SELECT h.kind, h.value, h.product_id, p.sku
           FROM product_identifiers h JOIN products p ON p.id = h.product_id
           WHERE h.tenant_id = current_tenant_id()
             AND h.kind = ANY($1::text[]) AND h.value = ANY($2::text[])""",
        sorted({k for k, _ in wanted}),
        [v for _, v in pairs],
    )
    return {
        (r["kind"], r["value"]): (r["product_id"], r["sku"])
        for r in rows
        if (r["kind"], r["value"]) in wanted
    }


# A field left empty keeps the product's value (or, for a new product, is null: DRAFT for
# the status, {} for attributes). Attributes are merged key by key; a key given null is
# removed (without a null among the given keys, that is a plain `||`, several times
# cheaper than taking the object apart). A product that would not change is not updated
# (nor returned). The products' current values come in as arrays (null when the batch
# names no product that exists), so that no plan can look them up by scanning the
# tenant's products (see refresh_statistics). The staged rows are read by their ids too
# (s.id = ANY): joined on b.id alone, the planner hashes every staged row of every upload
# for each batch, which makes a large import quadratic.
_UPSERT = """
INSERT INTO products AS p
  (sku, name, barcode, brand, category, description, status, price, attributes)
SELECT s.sku, COALESCE(s.name, b.name), COALESCE(s.barcode, b.barcode),
       COALESCE(s.brand, b.brand), COALESCE(s.category, b.category),
       COALESCE(s.description, b.description),
       COALESCE(s.status, b.status, 'DRAFT'), COALESCE(s.price::numeric, b.price),
       CASE WHEN s.attributes IS NULL THEN COALESCE(b.attributes::jsonb, '{}')
            WHEN NOT s.attributes::jsonb @? 'strict $.* ? (@ == null)'
              THEN COALESCE(b.attributes::jsonb, '{}') || s.attributes::jsonb
            ELSE (COALESCE(b.attributes::jsonb, '{}')
                  - ARRAY(SELECT key FROM jsonb_each(s.attributes::jsonb) WHERE value = 'null'))
                 || (SELECT COALESCE(jsonb_object_agg(key, value), '{}')
                     FROM jsonb_each(s.attributes::jsonb) WHERE value <> 'null') END
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::numeric[], $9::text[])
       WITH ORDINALITY
       AS b(id, name, barcode, brand, category, description, status, price, attributes, n)
JOIN import_rows s ON s.id = b.id
WHERE s.id = ANY($1::bigint[]) AND s.tenant_id = current_tenant_id()
ORDER BY b.n
ON CONFLICT (tenant_id, sku) DO UPDATE SET
  name = EXCLUDED.name, barcode = EXCLUDED.barcode, brand = EXCLUDED.brand,
  category = EXCLUDED.category, description = EXCLUDED.description, status = EXCLUDED.status,
  price = EXCLUDED.price, attributes = EXCLUDED.attributes, updated_at = now()
WHERE (p.name, p.barcode, p.brand, p.category, p.description, p.status, p.price, p.attributes)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.barcode, EXCLUDED.brand, EXCLUDED.category,
                        EXCLUDED.description, EXCLUDED.status, EXCLUDED.price,
                        EXCLUDED.attributes)
RETURNING p.id, p.sku, p.xmax = 0 AS created"""


async def upsert_products(
    conn: asyncpg.Connection, rows: Sequence[tuple[int, Product | None]]
) -> list[Upserted]:
    """Upsert the staged rows (id, and the product its SKU names, None for a new one) by
    SKU; the products created or changed."""
    if not rows:
        return []
    staged_ids = [staged_id for staged_id, _ in rows]
    products = [p for _, p in rows]
    # Only a batch that names products that exist has their values to send; unnest pads
    # a null array with nulls, as it does a shorter one.
    values: list[list[Any] | None] = [None] * 8
    if any(p is not None for p in products):
        values = [
            [p.name if p else None for p in products],
            [p.barcode if p else None for p in products],
            [p.brand if p else None for p in products],
            [p.category if p else None for p in products],
            [p.description if p else None for p in products],
            [p.status if p else None for p in products],
            [p.price if p else None for p in products],
            [json.dumps(p.attributes) if p else None for p in products],
        ]
    result = await conn.fetch(_UPSERT, staged_ids, *values)
    return [Upserted(r[0], r[1], r[2]) for r in result]


async def product_ids(conn: asyncpg.Connection, skus: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT id, sku FROM products
           WHERE tenant_id = current_tenant_id() AND sku = ANY($1::text[])""",
        list(skus),
    )
    return {r["sku"]: r["id"] for r in rows}


async def touch_products(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    """Mark products changed whose identifiers alone changed."""
    if ids:
        await conn.execute(
            """UPDATE products SET updated_at = now()
               WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()""",
            list(ids),
        )


async def set_identifiers(
    conn: asyncpg.Connection, products: Sequence[tuple[int, int]]
) -> set[int]:
    """For each (staged row, product): add each of the row's identifiers (KIND, value)
    to the product, or give the product's identifier of that kind the value; the products
    whose identifiers this changed. The identifiers are read from the staged rows, in
    (product, kind, value) order, each row by its id along the primary key: the LIMIT
    keeps the planner from joining the two lists, which a generic plan (made after a few
    batches, thinking each list holds ten ids) does by comparing every pair."""
    if not products:
        return set()
    staged_ids, product_ids_ = zip(*products, strict=True)
    rows = await conn.fetch(
        """INSERT INTO product_identifiers AS pi (product_id, kind, value)
           SELECT b.product_id, i.e->>0, i.e->>1
           FROM unnest($1::bigint[], $2::bigint[]) AS b(staged_id, product_id)
           CROSS JOIN LATERAL (
             SELECT s.identifiers FROM import_rows s
             WHERE s.id = b.staged_id AND s.tenant_id = current_tenant_id()
             LIMIT 1) s
           CROSS JOIN LATERAL jsonb_array_elements(s.identifiers) AS i(e)
           ORDER BY 1, 2, 3
           ON CONFLICT (product_id, kind) DO UPDATE SET value = EXCLUDED.value
             WHERE pi.value IS DISTINCT FROM EXCLUDED.value
           RETURNING pi.product_id""",
        list(staged_ids),
        list(product_ids_),
    )
    return {r[0] for r in rows}


async def refresh_statistics(conn: asyncpg.Connection) -> None:
    """Refresh the catalog's statistics if a bulk change outgrew them.

    The planner estimates how many products a tenant has from the statistics. A tenant
    whose catalog an import makes many times larger than they say gets plans that scan
    all its products for every batch (any lookup through an index led by tenant_id looks
    cheapest), which makes a large import quadratic. refresh_catalog_statistics()
    (migration 0004) runs ANALYZE when the rows changed since the last one outnumber what
    the statistics think the tenant has, so the estimates stay within a factor of two."""
    await conn.execute("SELECT refresh_catalog_statistics()")
