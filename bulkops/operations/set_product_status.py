"""setProductStatus: move products to DRAFT, ACTIVE or ARCHIVED."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    Operation,
    Thresholds,
    not_found_failures,
)


class SetStatusParams(BaseModel):
    status: Literal["DRAFT", "ACTIVE", "ARCHIVED"]


class SetProductStatus(Operation[SetStatusParams]):
    name = "setProductStatus"
    description = "Set the status of products; those already in it are skipped."
    thresholds = Thresholds(inline_threshold=1000, inline_limit=10_000, batch_size=5000)
    params_model = SetStatusParams

    async def apply_batch(
        self, ctx: BatchContext, params: SetStatusParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        row = await conn.fetchrow(
            """WITH target AS (
                 SELECT id, status FROM products
                 WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                 FOR UPDATE),
               changed AS (
                 UPDATE products p SET status = $2, updated_at = now()
                 FROM target t WHERE p.id = t.id AND t.status <> $2
                 RETURNING p.id)
             SELECT ARRAY(SELECT id FROM target) AS found,
                    ARRAY(SELECT id FROM changed ORDER BY id) AS changed""",
            ids,
            params.status,
        )
        found: set[int] = set(row["found"])
        changed: list[int] = row["changed"]
        errors = not_found_failures(ids, found)
        return BatchOutcome(
            succeeded=len(changed),
            failed=len(errors),
            skipped=len(found) - len(changed),
            errors=errors,
            changed_ids=changed,
        )
