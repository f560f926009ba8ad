"""updateProducts: set fields, merge attributes, set and remove identifiers."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import BaseModel

from bulkops.models import ItemFailure
from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    Counter,
    Operation,
    Thresholds,
    not_found_failures,
)
from bulkops.operations.product_patch import COLUMNS, ProductPatch

# A value of these kinds names one product of a tenant (a partial unique index, migration
# 0003, holds the same list). Other kinds, such as a manufacturer's MPN, may repeat.
UNIQUE_IDENTIFIER_KINDS = frozenset({"GTIN", "EAN", "UPC"})


class UpdateParams(BaseModel):
    patch: ProductPatch


class UpdateProducts(Operation[UpdateParams]):
    name = "updateProducts"
    description = (
        "Set fields, merge attributes and set or remove identifiers of products; products "
        "the patch would not change are skipped."
    )
    thresholds = Thresholds(inline_threshold=1000, inline_limit=10_000, batch_size=5000)
    params_model = UpdateParams
    counters = (
        Counter(
            "identifiersSet",
            "Identifiers added or given a new value (unchanged ones are not counted).",
        ),
        Counter("identifiersRemoved"),
    )

    async def apply_batch(
        self, ctx: BatchContext, params: UpdateParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        patch = params.patch
        rows = await conn.fetch(
            """SELECT id FROM products
               WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
               ORDER BY id FOR UPDATE""",
            ids,
        )
        found = [r["id"] for r in rows]
        taken = await identifier_clashes(conn, patch, found)
        ok = [i for i in found if i not in taken]
        changed, identifiers_set, identifiers_removed = await write_patch(conn, patch, ok)
        errors = sorted(
            [*not_found_failures(ids, set(found)), *taken.values()],
            key=lambda e: e.item_id or 0,
        )
        return BatchOutcome(
            succeeded=len(changed),
            failed=len(errors),
            skipped=len(ok) - len(changed),
            errors=errors,
            counters={
                "identifiersSet": identifiers_set,
                "identifiersRemoved": identifiers_removed,
            },
            changed_ids=changed,
        )


async def identifier_clashes(
    conn: asyncpg.Connection, patch: ProductPatch, found: list[int]
) -> dict[int, ItemFailure]:
    """The products of the batch that cannot take the patch's unique identifiers, found
    with one query before anything is written.

    A product fails when another product already holds one of the values. Among the
    products left, the one with the lowest id gets the values and the others fail, so the
    outcome does not depend on how the selection is cut into batches."""
    pairs = sorted((i.kind, i.value) for i in patch.identifiers_to_set)
    pairs = [(k, v) for k, v in pairs if k in UNIQUE_IDENTIFIER_KINDS]
    if not pairs or not found:
        return {}
    kinds, values = [k for k, _ in pairs], [v for _, v in pairs]
    # Concurrent batches giving out the same values wait for each other here, so the
    # check below sees what the other one committed.
    await conn.execute(
        """SELECT pg_advisory_xact_lock(
                    hashtextextended(current_tenant_id()::text || '/' || k || '/' || v, 0))
           FROM unnest($1::text[], $2::text[]) AS t(k, v)""",
        kinds,
        values,
    )
    holders = await conn.fetch(
        """SELECT kind, value, product_id FROM product_identifiers
           WHERE tenant_id = current_tenant_id()
             AND (kind, value) IN (SELECT * FROM unnest($1::text[], $2::text[]))
           ORDER BY kind, value""",
        kinds,
        values,
    )
    taken: dict[int, ItemFailure] = {}
    for product_id in found:
        for h in holders:
            if h["product_id"] != product_id:
                taken[product_id] = ItemFailure(
                    "IDENTIFIER_TAKEN",
                    f"{h['kind']} {h['value']!r} already belongs to product {h['product_id']}.",
                    item_id=product_id,
                )
                break
    candidates = [i for i in found if i not in taken]
    kind, value = pairs[0]
    for product_id in candidates[1:]:
        taken[product_id] = ItemFailure(
            "IDENTIFIER_TAKEN",
            f"{kind} {value!r} names one product: it goes to product {candidates[0]}, "
            "the first of the selection.",
            item_id=product_id,
        )
    return taken


async def write_patch(
    conn: asyncpg.Connection, patch: ProductPatch, ids: list[int]
) -> tuple[list[int], int, int]:
    """Apply the patch to the products `ids` in one statement; returns the ids that
    changed and how many identifiers were set and removed."""
    if not ids:
        return [], 0, 0
    identifiers = patch.identifiers_to_set
    args: list[Any] = [
        ids,
        patch.kinds_to_remove,
        [i.kind for i in identifiers],
        [i.value for i in identifiers],
    ]

    def param(value: Any, sql_type: str) -> str:
        args.append(value)
        return f"${len(args)}::{sql_type}"

    assignments: list[str] = []
    differs: list[str] = []
    given = patch.columns
    for column, sql_type in COLUMNS:
        if column in given:
            ref = param(given[column], sql_type)
            assignments.append(f"{column} = {ref}")
            differs.append(f"p.{column} IS DISTINCT FROM {ref}")
    if patch.attributes:
        drop = [k for k, v in patch.attributes.items() if v is None]
        keep = {k: v for k, v in patch.attributes.items() if v is not None}
        merged = f"(p.attributes - {param(drop, 'text[]')}) || {param(keep, 'jsonb')}"
        assignments.append(f"attributes = {merged}")
        differs.append(f"p.attributes IS DISTINCT FROM {merged}")
    assignments.append("updated_at = now()")
    differs.append("p.id IN (SELECT product_id FROM touched)")
    row = await conn.fetchrow(
        f"""WITH ok AS (SELECT unnest($1::bigint[]) AS id),
               removed AS (
                 DELETE FROM product_identifiers pi USING ok
                 WHERE pi.product_id = ok.id AND pi.tenant_id = current_tenant_id()
                   AND pi.kind = ANY($2::text[])
                 RETURNING pi.product_id),
               upserted AS (
                 INSERT INTO product_identifiers AS pi (product_id, kind, value)
                 SELECT ok.id, s.kind, s.value
                 FROM ok CROSS JOIN unnest($3::text[], $4::text[]) AS s(kind, value)
                 ORDER BY 1, 2
                 ON CONFLICT (product_id, kind) DO UPDATE SET value = EXCLUDED.value
                   WHERE pi.value IS DISTINCT FROM EXCLUDED.value
                 RETURNING pi.product_id),
               touched AS (
                 SELECT product_id FROM removed UNION SELECT product_id FROM upserted),
               changed AS (
                 UPDATE products p SET {", ".join(assignments)}
                 FROM ok
                 WHERE p.id = ok.id AND p.tenant_id = current_tenant_id()
                   AND ({" OR ".join(differs)})
                 RETURNING p.id)
             SELECT ARRAY(SELECT id FROM changed ORDER BY id) AS changed,
                    (SELECT count(*) FROM upserted) AS identifiers_set,
                    (SELECT count(*) FROM removed) AS identifiers_removed""",
        *args,
    )
    return row["changed"], row["identifiers_set"], row["identifiers_removed"]
