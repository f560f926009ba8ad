"""An operation defined here, in the tests only, registered and called over GraphQL, inline
and as a durable job: adding an operation is its module and a registry line, nothing else
(docs/adding-an-operation.md follows this file)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bulkops.config import Settings
from bulkops.operations import REGISTRY, Registry
from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    Counter,
    NoParams,
    Operation,
    Thresholds,
)
from bulkops.storage import Storage
from tests.api.queries import JOB
from tests.support import GraphQLClient, Tenant, make_products, run_worker


class TagProducts(Operation[NoParams]):
    """Mark products as reviewed: one set-based UPDATE per batch."""

    name = "tagProducts"
    description = "Mark products as reviewed (attribute reviewed: true)."
    # Small numbers, so that a handful of products already makes a job of several batches.
    thresholds = Thresholds(inline_threshold=5, inline_limit=20, batch_size=3)
    params_model = NoParams
    counters = (Counter("newlyReviewed", "Products that were not marked reviewed before."),)
    summary_description = "Items are products: succeeded counts those marked."

    async def apply_batch(
        self, ctx: BatchContext, params: NoParams, ids: list[int]
    ) -> BatchOutcome:
        rows = await ctx.conn.fetch(
            """WITH target AS (
                 SELECT id, attributes ? 'reviewed' AS had FROM products
                 WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                 ORDER BY id FOR UPDATE)
               UPDATE products p SET attributes = p.attributes || '{"reviewed": true}'
               FROM target t WHERE p.id = t.id
               RETURNING p.id, t.had""",
            ids,
        )
        return BatchOutcome(
            succeeded=len(rows),
            # A product deleted meanwhile has nothing left to mark.
            skipped=len(ids) - len(rows),
            counters={"newlyReviewed": sum(1 for r in rows if not r["had"])},
            changed_ids=sorted(r["id"] for r in rows)[:10],
        )


WITH_TAGS = REGISTRY.with_operations(TagProducts())

TAG = """
mutation($selection: ProductSelection!, $options: BulkOptions) {
  tagProducts(selection: $selection, options: $options) {
    __typename
    ... on TagProductsSummary { matched succeeded skipped newlyReviewed dryRun }
    ... on JobQueued { job { id status total } }
    ... on Rejected { code field }
  }
}"""


@pytest.fixture
def operations() -> Registry:
    return WITH_TAGS


async def reviewed(owner: asyncpg.Connection, tenant: Tenant) -> list[bool]:
    rows = await owner.fetch(
        """SELECT attributes ? 'reviewed' AS reviewed FROM products
           WHERE tenant_id = $1 ORDER BY id""",
        tenant.id,
    )
    return [r["reviewed"] for r in rows]


async def test_a_registered_operation_runs_inline(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    ids = await make_products(owner, storage, tenant, 6, with_images=False)
    chosen = [str(i) for i in ids[:4]]
    data = await gql(TAG, {"selection": {"ids": chosen}})
    assert data["tagProducts"] == {
        "__typename": "TagProductsSummary",
        "matched": 4,
        "succeeded": 4,
        "skipped": 0,
        "newlyReviewed": 4,
        "dryRun": False,
    }
    assert await reviewed(owner, tenant) == [True] * 4 + [False] * 2
    # Again: the same products, none newly reviewed.
    again = await gql(TAG, {"selection": {"ids": chosen}})
    assert (again["tagProducts"]["succeeded"], again["tagProducts"]["newlyReviewed"]) == (4, 0)


async def test_a_registered_operation_runs_as_a_job(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 8, with_images=False)
    # Over the inline threshold of 5, AUTO makes a job.
    data = await gql(TAG, {"selection": {"filter": {"brand": ["Acme"]}}})
    queued: dict[str, Any] = data["tagProducts"]
    assert queued["__typename"] == "JobQueued"
    assert (queued["job"]["status"], queued["job"]["total"]) == ("QUEUED", 8)
    assert await reviewed(owner, tenant) == [False] * 8

    await run_worker(settings, operations=WITH_TAGS)

    job = (await gql(JOB, {"id": queued["job"]["id"]}))["job"]
    assert (job["operation"], job["status"], job["processed"]) == ("tagProducts", "SUCCEEDED", 8)
    assert job["result"]["newlyReviewed"] == 8
    assert await reviewed(owner, tenant) == [True] * 8


async def test_a_registered_operation_is_listed_and_checks_its_limits(
    gql: GraphQLClient, owner: asyncpg.Connection, storage: Storage, tenant: Tenant
) -> None:
    listed = await gql("{ operations { name inlineThreshold inlineLimit batchSize } }")
    assert {
        "name": "tagProducts",
        "inlineThreshold": 5,
        "inlineLimit": 20,
        "batchSize": 3,
    } in listed["operations"]
    await make_products(owner, storage, tenant, 21, with_images=False)
    data = await gql(
        TAG, {"selection": {"filter": {"brand": ["Acme"]}}, "options": {"mode": "INLINE"}}
    )
    assert data["tagProducts"] == {
        "__typename": "Rejected",
        "code": "INLINE_LIMIT_EXCEEDED",
        "field": ["options", "mode"],
    }
    assert await reviewed(owner, tenant) == [False] * 21
