"""Durable jobs: pause, resume, retry, idempotency keys, priorities, quotas, recovery."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bulkops.config import Settings
from bulkops.storage import Storage
from bulkops.tasks.housekeeping import reconcile, remove_expired, sweep_files
from tests.api.queries import DELETE, JOB, SET_STATUS
from tests.support import GraphQLClient, Runner, Tenant, make_products, run_worker, stored_names

ACTION = """
mutation($id: ID!) {{
  {name}(id: $id) {{ __typename ... on Job {{ id status }} ... on Rejected {{ code field }} }}
}}"""
RETRY = """
mutation($id: ID!, $scope: RetryScope) {
  retryJob(id: $id, scope: $scope) {
    __typename
    ... on JobQueued { job { id status total parent { id } } }
    ... on Rejected { code field }
  }
}"""


async def queue(gql: GraphQLClient, document: str, variables: dict[str, Any]) -> str:
    result = next(iter((await gql(document, variables)).values()))
    assert result["__typename"] == "JobQueued", result
    return str(result["job"]["id"])


async def test_pause_stops_after_the_batch_and_resume_continues_from_the_cursor(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 50, with_images=False)
    job_id = await queue(
        gql, DELETE, {"selection": {"filter": {}}, "options": {"mode": "BACKGROUND"}}
    )
    tiny = settings.model_copy(update={"batch_size": 10, "slice_seconds": 0.0})
    async with Runner(tiny) as runner:
        assert await runner.slice(job_id, tenant) == "SLICED"
    paused = (await gql(ACTION.format(name="pauseJob"), {"id": job_id}))["pauseJob"]
    assert paused["status"] == "PAUSED"
    await run_worker(tiny)
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"]) == ("PAUSED", 10)
    assert await owner.fetchval("SELECT count(*) FROM products") == 40

    again = (await gql(ACTION.format(name="resumeJob"), {"id": job_id}))["resumeJob"]
    assert again["status"] == "QUEUED"
    await run_worker(tiny)
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"]) == ("SUCCEEDED", 50, 50)
    assert await owner.fetchval("SELECT count(*) FROM products") == 0

    refused = (await gql(ACTION.format(name="resumeJob"), {"id": job_id}))["resumeJob"]
    assert (refused["code"], refused["field"]) == ("JOB_NOT_PAUSED", ["id"])
    refused = (await gql(ACTION.format(name="pauseJob"), {"id": job_id}))["pauseJob"]
    assert (refused["code"], refused["field"]) == ("JOB_NOT_PAUSABLE", ["id"])


async def test_a_paused_job_can_be_cancelled(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    job_id = await queue(
        gql, DELETE, {"selection": {"filter": {}}, "options": {"mode": "BACKGROUND"}}
    )
    await gql(ACTION.format(name="pauseJob"), {"id": job_id})
    cancelled = (await gql(ACTION.format(name="cancelJob"), {"id": job_id}))["cancelJob"]
    assert cancelled["status"] == "CANCELLED"
    await run_worker(settings)
    assert await owner.fetchval("SELECT count(*) FROM products") == 5


async def test_retry_of_failed_items_makes_a_child_job_of_just_those(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 20, with_images=False)
    parent = await queue(
        gql,
        SET_STATUS,
        {
            "selection": {"ids": [str(i) for i in ids]},
            "status": "ARCHIVED",
            "options": {"mode": "BACKGROUND"},
        },
    )
    refused = (await gql(RETRY, {"id": parent}))["retryJob"]
    assert (refused["code"], refused["field"]) == ("JOB_NOT_FINISHED", ["id"])
    # Four products vanish before the job runs, then come back (restored from a backup).
    gone = ids[5:9]
    saved = await owner.fetch("SELECT * FROM products WHERE id = ANY($1::bigint[])", gone)
    await owner.execute("DELETE FROM products WHERE id = ANY($1::bigint[])", gone)
    await run_worker(settings)
    assert (await gql(JOB, {"id": parent}))["job"]["status"] == "PARTIAL"
    await owner.executemany(
        """INSERT INTO products (id, tenant_id, sku, name, status, created_at, updated_at)
           OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        [
            (
                r["id"],
                r["tenant_id"],
                r["sku"],
                r["name"],
                r["status"],
                r["created_at"],
                r["updated_at"],
            )
            for r in saved
        ],
    )

    child = (await gql(RETRY, {"id": parent, "scope": "FAILED_ITEMS"}))["retryJob"]
    assert child["__typename"] == "JobQueued"
    assert (child["job"]["total"], child["job"]["parent"]) == (4, {"id": parent})
    await run_worker(settings)
    job = (await gql(JOB, {"id": child["job"]["id"]}))["job"]
    assert (job["status"], job["succeeded"]) == ("SUCCEEDED", 4)
    archived = await owner.fetchval("SELECT count(*) FROM products WHERE status = 'ARCHIVED'")
    assert archived == 20

    none_left = (await gql(RETRY, {"id": child["job"]["id"]}))["retryJob"]
    assert (none_left["code"], none_left["field"]) == ("NOTHING_TO_RETRY", ["scope"])
    everything = (await gql(RETRY, {"id": parent, "scope": "ALL"}))["retryJob"]
    assert everything["job"]["total"] == 20


async def test_an_idempotency_key_replays_the_first_response_and_never_makes_a_second_job(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    await make_products(owner, storage, tenant, 30, with_images=False)
    request = {
        "selection": {"filter": {}},
        "status": "ACTIVE",
        "options": {"mode": "BACKGROUND", "idempotencyKey": "k-1"},
    }
    first = (await gql(SET_STATUS, request))["setProductStatus"]
    second = (await gql(SET_STATUS, request))["setProductStatus"]
    assert first["__typename"] == second["__typename"] == "JobQueued"
    assert first["job"]["id"] == second["job"]["id"]
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 1

    other = dict(request, status="ARCHIVED")
    reused = (await gql(SET_STATUS, other))["setProductStatus"]
    assert (reused["code"], reused["field"]) == (
        "IDEMPOTENCY_KEY_REUSED",
        ["options", "idempotencyKey"],
    )

    inline = {
        "selection": {"ids": ["1", "2"]},
        "status": "ARCHIVED",
        "options": {"idempotencyKey": "k-2"},
    }
    done = (await gql(SET_STATUS, inline))["setProductStatus"]
    await owner.execute("UPDATE products SET status = 'DRAFT' WHERE id IN (1, 2)")
    replayed = (await gql(SET_STATUS, inline))["setProductStatus"]
    assert replayed == done
    assert done["succeeded"] == 2
    # The replay did not run again: the products stay as they were changed since.
    assert await owner.fetchval("SELECT count(*) FROM products WHERE status = 'ARCHIVED'") == 0


async def test_concurrent_duplicates_make_one_job(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
) -> None:
    await make_products(owner, storage, tenant, 10, with_images=False)
    request = {
        "selection": {"filter": {}},
        "options": {"mode": "BACKGROUND", "idempotencyKey": "same"},
    }
    results = await asyncio.gather(*(gql(DELETE, request) for _ in range(6)))
    answers = [r["deleteProducts"] for r in results]
    jobs = {a["job"]["id"] for a in answers if a["__typename"] == "JobQueued"}
    in_use = [a for a in answers if a["__typename"] == "Rejected"]
    assert len(jobs) == 1
    assert all(a["code"] == "IDEMPOTENCY_KEY_IN_USE" for a in in_use)
    assert await owner.fetchval("SELECT count(*) FROM jobs") == 1


async def test_an_expired_idempotency_key_is_a_new_request(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 10, with_images=False)
    request = {
        "selection": {"filter": {}},
        "options": {"mode": "BACKGROUND", "idempotencyKey": "old"},
    }
    first = (await gql(DELETE, request))["deleteProducts"]["job"]["id"]
    await owner.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    second = (await gql(DELETE, request))["deleteProducts"]["job"]["id"]
    assert first != second
    async with Runner(settings) as runner:
        assert await remove_expired(runner.deps) == 0
    assert await owner.fetchval("SELECT count(*) FROM idempotency_keys") == 1


async def test_a_high_priority_job_starts_before_queued_normal_slices(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 30, with_images=False)
    low = await queue(
        gql,
        SET_STATUS,
        {
            "selection": {"filter": {}},
            "status": "ACTIVE",
            "options": {"mode": "BACKGROUND", "priority": "LOW"},
        },
    )
    high = await queue(
        gql,
        SET_STATUS,
        {
            "selection": {"filter": {}},
            "status": "ARCHIVED",
            "options": {"mode": "BACKGROUND", "priority": "HIGH"},
        },
    )
    await run_worker(settings.model_copy(update={"worker_max_jobs": 1}))
    started = await owner.fetch("SELECT id FROM jobs ORDER BY started_at")
    assert [str(r["id"]) for r in started] == [high, low]
    # LOW ran last, so its status is what the products have now.
    assert await owner.fetchval("SELECT count(*) FROM products WHERE status = 'ACTIVE'") == 30


async def test_jobs_over_the_tenant_quota_wait_queued_with_a_position(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 20, with_images=False)
    quota = settings.model_copy(
        update={"max_running_jobs_per_tenant": 1, "batch_size": 5, "slice_seconds": 0.0}
    )
    first = await queue(
        gql,
        SET_STATUS,
        {"selection": {"filter": {}}, "status": "ACTIVE", "options": {"mode": "BACKGROUND"}},
    )
    second = await queue(
        gql,
        SET_STATUS,
        {"selection": {"filter": {}}, "status": "DRAFT", "options": {"mode": "BACKGROUND"}},
    )
    position = "query($id: ID!) { job(id: $id) { status queuePosition } }"
    assert (await gql(position, {"id": second}))["job"] == {"status": "QUEUED", "queuePosition": 2}
    async with Runner(quota) as runner:
        assert await runner.slice(first, tenant) == "SLICED"
        assert await runner.slice(second, tenant) == "THROTTLED"
    assert (await gql(position, {"id": second}))["job"] == {"status": "QUEUED", "queuePosition": 1}
    await run_worker(quota)
    for job_id in (first, second):
        assert (await gql(JOB, {"id": job_id}))["job"]["status"] == "SUCCEEDED"


async def test_a_job_whose_worker_died_is_picked_up_again_from_its_cursor(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    redis_url: str,
) -> None:
    await make_products(owner, storage, tenant, 40, with_images=False)
    job_id = await queue(
        gql, DELETE, {"selection": {"filter": {}}, "options": {"mode": "BACKGROUND"}}
    )
    short = settings.model_copy(
        update={"batch_size": 10, "slice_seconds": 0.0, "lease_seconds": 0.2}
    )
    async with Runner(short) as runner:
        assert await runner.slice(job_id, tenant) == "SLICED"
        # The worker "dies" holding the job: its lease is live, and Redis loses the queue.
        await owner.execute(
            """UPDATE jobs SET lease_owner = 'dead-worker',
                 lease_expires_at = clock_timestamp() + interval '0.2 seconds' WHERE id = $1""",
            job_id,
        )
        client = aioredis.from_url(redis_url)
        await client.flushdb()
        await client.aclose()
        assert await runner.slice(job_id, tenant) == "HELD"
        await asyncio.sleep(0.5)
        await owner.execute("UPDATE jobs SET updated_at = updated_at - interval '1 second'")
        assert await reconcile(runner.deps, runner.redis) == 1
        # A second pass finds the slice waiting in the queue and leaves it alone.
        await owner.execute("UPDATE jobs SET updated_at = updated_at - interval '1 second'")
        assert await reconcile(runner.deps, runner.redis) == 0
    await run_worker(short)
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"]) == ("SUCCEEDED", 40, 40)


async def test_finished_jobs_past_the_retention_are_removed(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 6, with_images=False)
    old = await queue(
        gql, DELETE, {"selection": {"ids": ["1", "2"]}, "options": {"mode": "BACKGROUND"}}
    )
    recent = await queue(
        gql, DELETE, {"selection": {"ids": ["3"]}, "options": {"mode": "BACKGROUND"}}
    )
    waiting = await queue(
        gql, DELETE, {"selection": {"ids": ["4"]}, "options": {"mode": "BACKGROUND"}}
    )
    await gql(ACTION.format(name="pauseJob"), {"id": waiting})
    await run_worker(settings)
    await owner.execute(
        "UPDATE jobs SET finished_at = now() - interval '8 days' WHERE id = $1", old
    )
    async with Runner(settings) as runner:
        assert await remove_expired(runner.deps) == 1
    left = {str(r["id"]) for r in await owner.fetch("SELECT id FROM jobs")}
    assert left == {recent, waiting}
    items = "SELECT COALESCE(sum(cardinality(ids)), 0) FROM job_item_chunks"
    assert await owner.fetchval(f"{items} WHERE job_id = $1", old) == 0
    assert await owner.fetchval(items) == 2
    # Removing a tenant removes its jobs and, with them, their items.
    await owner.execute("DELETE FROM tenants WHERE id = $1", tenant.id)
    assert await owner.fetchval(items) == 0


async def test_files_left_behind_by_a_lost_purge_are_swept_up(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 5)
    # Rows deleted and their files queued, as by a batch whose purge request was lost.
    await owner.execute(
        """WITH img AS (DELETE FROM product_images WHERE product_id = ANY($1::bigint[])
                        RETURNING tenant_id, storage_key)
           INSERT INTO file_deletions (tenant_id, storage_keys)
           SELECT tenant_id, array_agg(storage_key) FROM img GROUP BY tenant_id""",
        ids[:3],
    )
    async with Runner(settings) as runner:
        assert await sweep_files(runner.deps, runner.redis) == 1
    await run_worker(settings)
    assert await stored_names(storage, suffix=".svg") == sorted(f"{i}.svg" for i in ids[3:])
    assert await owner.fetchval("SELECT count(*) FROM file_deletions") == 0
