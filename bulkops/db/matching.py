"""matchProducts' SQL: staging input rows, one set-based lookup per rule over a batch of
rows, the results, and reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bulkops.models import ResultRow

# A value of these kinds is a trade item number: compared with products' barcodes and
# with their identifiers of the same family (BARCODE is accepted on input only).
CODE_KINDS = ("GTIN", "EAN", "UPC")

# The rows of a batch, as `match_rows r`: $1 the input, $2 the row numbers.
_BATCH = "r.input_id = $1 AND r.row_number = ANY($2::int[]) AND r.tenant_id = current_tenant_id()"


@dataclass(frozen=True)
class BatchRow:
    """What a batch needs to know about one of its rows to pick the rules that apply."""

    row: int
    error_code: str | None
    error_message: str | None
    has_codes: bool
    has_identifiers: bool
    has_sku: bool
    has_name: bool
    has_brand: bool

    @classmethod
    def from_row(cls, row: Any) -> BatchRow:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Hit:
    row: int
    product_id: int
    score: float


@dataclass(frozen=True)
class RowOutcome:
    """What became of one row: MATCHED (with its product), UNMATCHED (with candidates
    [(product id, similarity)], best first) or INVALID."""

    row: int
    status: str
    product_id: int | None = None
    matched_by: str | None = None
    score: float | None = None
    candidates: tuple[tuple[int, float], ...] = ()


async def batch_rows(
    conn: asyncpg.Connection, input_id: str, rows: Sequence[int]
) -> list[BatchRow]:
    found = await conn.fetch(
        f"""SELECT r.row_number AS row, r.error_code, r.error_message,
                   cardinality(r.codes) > 0 AS has_codes,
                   cardinality(r.identifier_kinds) > 0 AS has_identifiers,
                   r.sku IS NOT NULL AS has_sku,
                   r.name_key <> '' AS has_name,
                   r.brand_key <> '' AS has_brand
            FROM match_rows r WHERE {_BATCH}
            ORDER BY r.row_number""",
        input_id,
        list(rows),
    )
    return [BatchRow.from_row(r) for r in found]


async def _hits(
    conn: asyncpg.Connection, query: str, input_id: str, rows: Sequence[int], *args: Any
) -> list[Hit]:
    found = await conn.fetch(query, input_id, list(rows), *args)
    return [Hit(r["row_number"], r["product_id"], r["score"]) for r in found]


async def match_codes(conn: asyncpg.Connection, input_id: str, rows: Sequence[int]) -> list[Hit]:
    """BARCODE: a code of the row equals a product's barcode or one of its GTIN, EAN or UPC
    identifiers. The row's first code that hits wins, then the lowest product id."""
    return await _hits(
        conn,
        f"""SELECT DISTINCT ON (r.row_number) r.row_number, hit.id AS product_id,
                   1.0::real AS score
            FROM match_rows r
            CROSS JOIN LATERAL unnest(r.codes) WITH ORDINALITY AS c(code, n)
            JOIN LATERAL (
              SELECT p.id FROM products p
              WHERE p.tenant_id = current_tenant_id() AND p.barcode = c.code
              UNION
              SELECT i.product_id FROM product_identifiers i
              WHERE i.tenant_id = current_tenant_id()
                AND i.kind IN ('GTIN', 'EAN', 'UPC') AND i.value = c.code) hit ON true
            WHERE {_BATCH}
            ORDER BY r.row_number, c.n, hit.id""",
        input_id,
        rows,
    )


async def match_identifiers(
    conn: asyncpg.Connection, input_id: str, rows: Sequence[int]
) -> list[Hit]:
    """IDENTIFIER: another identifier of the row (kind and value) equals one of a product's."""
    return await _hits(
        conn,
        f"""SELECT DISTINCT ON (r.row_number) r.row_number, i.product_id, 1.0::real AS score
            FROM match_rows r
            CROSS JOIN LATERAL unnest(r.identifier_kinds, r.identifier_values)
              WITH ORDINALITY AS x(kind, value, n)
            JOIN product_identifiers i
              ON i.tenant_id = current_tenant_id() AND i.kind = x.kind AND i.value = x.value
            WHERE {_BATCH}
            ORDER BY r.row_number, x.n, i.product_id""",
        input_id,
        rows,
    )


async def match_skus(conn: asyncpg.Connection, input_id: str, rows: Sequence[int]) -> list[Hit]:
    """SKU: the row's SKU is a product's (SKUs are unique within a tenant)."""
    return await _hits(
        conn,
        f"""SELECT r.row_number, p.id AS product_id, 1.0::real AS score
            FROM match_rows r
            JOIN products p ON p.tenant_id = current_tenant_id() AND p.sku = r.sku
            WHERE {_BATCH}""",
        input_id,
        rows,
    )


async def match_names(conn: asyncpg.Connection, input_id: str, rows: Sequence[int]) -> list[Hit]:
    """NAME_BRAND: normalized name and brand both equal (no brand matches no brand); the
    lowest product id among equals. (The name rules are functions of migration 0005, so
    that their indexes serve them under row-level security.)"""
    return await _hits(
        conn,
        """SELECT row_number, product_id, 1.0::real AS score
           FROM match_name_brand($1, $2::int[])""",
        input_id,
        rows,
    )


async def match_fuzzy(
    conn: asyncpg.Connection, input_id: str, rows: Sequence[int], *, threshold: float
) -> list[Hit]:
    """FUZZY_NAME: the product of the same brand whose name is the most similar (trigram
    similarity, which ignores case and spacing, at least `threshold`); the lowest id among
    equals."""
    return await _hits(
        conn,
        """SELECT row_number, product_id, score
           FROM match_fuzzy_name($1, $2::int[], $3::real)""",
        input_id,
        rows,
        threshold,
    )


async def find_candidates(
    conn: asyncpg.Connection, input_id: str, rows: Sequence[int], *, floor: float, limit: int
) -> dict[int, list[tuple[int, float]]]:
    """Up to `limit` products per row whose names are the most similar (at least `floor`),
    within the row's brand, or among all products for a row without one; best first."""
    found = await conn.fetch(
        """SELECT row_number, product_id, score
           FROM match_name_candidates($1, $2::int[], $3::real, $4)""",
        input_id,
        list(rows),
        floor,
        limit,
    )
    candidates: dict[int, list[tuple[int, float]]] = {}
    for r in found:
        candidates.setdefault(r["row_number"], []).append((r["product_id"], r["score"]))
    return candidates


async def write_results(
    conn: asyncpg.Connection, input_id: str, outcomes: Sequence[RowOutcome]
) -> None:
    """Store the outcomes of a batch's rows (a batch run again, after a lost lease, overwrites
    its own). A retried job stages its rows under an input of its own (copy_input)."""
    if not outcomes:
        return
    await conn.execute(
        """INSERT INTO match_results AS m (input_id, row_number, status, product_id, matched_by,
                                           score, candidates)
           SELECT $1, x.row_number, x.status, x.product_id, x.matched_by, x.score,
                  COALESCE(x.candidates, '[]')
           FROM jsonb_to_recordset($2::jsonb) AS x(row_number int, status text,
             product_id bigint, matched_by text, score real, candidates jsonb)
           ORDER BY x.row_number
           ON CONFLICT (input_id, row_number) DO UPDATE SET
             status = EXCLUDED.status, product_id = EXCLUDED.product_id,
             matched_by = EXCLUDED.matched_by, score = EXCLUDED.score,
             candidates = EXCLUDED.candidates""",
        input_id,
        [
            {
                "row_number": o.row,
                "status": o.status,
                "product_id": o.product_id,
                "matched_by": o.matched_by,
                "score": o.score,
                "candidates": [{"id": i, "score": s} for i, s in o.candidates],
            }
            for o in outcomes
        ],
    )


async def add_to_dataset(
    conn: asyncpg.Connection, dataset_id: int, product_ids: Sequence[int]
) -> int:
    """Add the products to the dataset; returns how many were not in it yet."""
    if not product_ids:
        return 0
    added: int = await conn.fetchval(
        """WITH added AS (
             INSERT INTO dataset_products (dataset_id, product_id)
             SELECT $1, p.id FROM products p
             WHERE p.id = ANY($2::bigint[]) AND p.tenant_id = current_tenant_id()
             ORDER BY p.id
             ON CONFLICT DO NOTHING
             RETURNING 1)
           SELECT count(*) FROM added""",
        dataset_id,
        sorted(set(product_ids)),
    )
    return added


_RESULTS = """SELECT m.row_number, m.status, m.product_id, m.matched_by, m.score,
                     m.candidates, r.fields, r.error_message
              FROM match_results m
              JOIN match_rows r ON r.input_id = m.input_id AND r.row_number = m.row_number
              WHERE m.input_id = $1 AND m.tenant_id = current_tenant_id()"""


def _result_filter(
    args: list[Any], *, matched: bool | None, matched_by: str | None, alias: str = "m"
) -> str:
    clauses = []
    if matched is not None:
        clauses.append(f"{alias}.status {'=' if matched else '<>'} 'MATCHED'")
    if matched_by is not None:
        args.append(matched_by)
        clauses.append(f"{alias}.matched_by = ${len(args)}")
    return "".join(f" AND {c}" for c in clauses)


async def results_page(
    conn: asyncpg.Connection,
    input_id: str,
    *,
    after: int,
    limit: int,
    matched: bool | None = None,
    matched_by: str | None = None,
) -> list[ResultRow]:
    """Stored outcomes past row `after`, in row order."""
    args: list[Any] = [input_id, after, limit]
    where = _result_filter(args, matched=matched, matched_by=matched_by)
    rows = await conn.fetch(
        f"{_RESULTS} AND m.row_number > $2{where} ORDER BY m.row_number LIMIT $3", *args
    )
    return [ResultRow.from_row(r) for r in rows]


async def count_results(
    conn: asyncpg.Connection,
    input_id: str,
    *,
    matched: bool | None = None,
    matched_by: str | None = None,
) -> int:
    args: list[Any] = [input_id]
    where = _result_filter(args, matched=matched, matched_by=matched_by)
    count: int = await conn.fetchval(
        "SELECT count(*) FROM match_results m"
        f" WHERE m.input_id = $1 AND m.tenant_id = current_tenant_id(){where}",
        *args,
    )
    return count
