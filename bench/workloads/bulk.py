"""W1-W3: a background bulk change of a tenth of the catalog, against its raw-SQL limit.

Ours: the mutation (`mode: BACKGROUND`) sent to a real API process and run by one real worker
process, timed from the mutation being sent to the terminal state seen by a websocket
subscriber.

Baseline: the operation's own set-based statement (copied from bulkops/operations/; keep them
in step) over the same products in the same order, 5,000 per transaction, each transaction
also updating a progress row. It runs on one connection acting as `bulkops_app` under
row-level security, setting the tenant in every transaction, as the worker does: what it
leaves out is the API, the queue, the job row's lock, lease and counters, and publishing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.catalog import BenchError, Catalog, connect_app, count_files, log, settle_disk
from bench.harness import Harness
from bench.results import Result, median
from bench.stack import TimedJob, mutation_sender, timed_job

BATCH = 5000
JOB_TIMEOUT = 1800.0
PURGE_TIMEOUT = 1800.0

SET_TENANT = "SELECT set_config('bulkops.tenant_id', $1, true)"
START_PROGRESS = """INSERT INTO jobs (operation, status, selection, total, started_at)
                    VALUES ($1, 'RUNNING', '{}'::jsonb, $2, clock_timestamp()) RETURNING id"""
PROGRESS = """UPDATE jobs SET cursor = $2, processed = processed + $3, succeeded = succeeded + $4,
                skipped = skipped + $3 - $4, version = version + 1,
                updated_at = clock_timestamp()
              WHERE id = $1 AND tenant_id = current_tenant_id()"""
# DeleteProducts.apply_batch, returning the storage keys (which a raw script must remove
# itself) instead of queueing them in file_deletions.
DELETE = """WITH img AS (
              DELETE FROM product_images
              WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
              RETURNING storage_key),
            ds AS (
              DELETE FROM dataset_products
              WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
              RETURNING 1),
            idents AS (
              DELETE FROM product_identifiers
              WHERE product_id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
              RETURNING 1),
            gone AS (
              DELETE FROM products
              WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
              RETURNING id)
          SELECT (SELECT count(*) FROM gone) AS changed,
                 ARRAY(SELECT storage_key FROM img) AS keys"""
# filter_batch_ids with {status: [...]}, and SetProductStatus.apply_batch.
NEXT_BY_STATUS = """SELECT p.id FROM products p
                    WHERE p.id > $1 AND p.tenant_id = current_tenant_id()
                      AND p.status = ANY($3::text[])
                    ORDER BY p.id LIMIT $2"""
SET_STATUS = """WITH target AS (
                  SELECT id, status FROM products
                  WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                  FOR UPDATE),
                changed AS (
                  UPDATE products p SET status = $2, updated_at = now()
                  FROM target t WHERE p.id = t.id AND t.status <> $2
                  RETURNING p.id)
              SELECT cardinality(ARRAY(SELECT id FROM changed)) AS changed"""
# AddProductsToDataset.apply_batch, with its dataset lock.
LOCK_DATASET = """SELECT 1 FROM datasets WHERE id = $1 AND tenant_id = current_tenant_id()
                  FOR SHARE"""
ADD = """WITH found AS (
           SELECT id FROM products
           WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()),
         added AS (
           INSERT INTO dataset_products (dataset_id, product_id)
           SELECT $2, id FROM found ORDER BY id
           ON CONFLICT DO NOTHING
           RETURNING product_id)
       SELECT (SELECT count(*) FROM added) AS changed"""

DELETE_MUTATION = """mutation($ids: [ID!]!) {
  deleteProducts(selection: {ids: $ids}, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }"""
STATUS_MUTATION = """mutation {
  setProductStatus(selection: {filter: {status: [ARCHIVED]}}, status: ACTIVE,
                   options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }"""
ADD_MUTATION = """mutation($dataset: ID!, $ids: [ID!]!) {
  addProductsToDataset(datasetId: $dataset, selection: {ids: $ids}, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }"""


@dataclass(frozen=True)
class BaselineRun:
    seconds: float
    batches: int
    changed: int
    keys: list[str]


Batches = Callable[[asyncpg.Connection, Catalog, str], Awaitable[tuple[int, int, list[str]]]]


@dataclass(frozen=True)
class BulkCase:
    """One bulk workload: the mutation, what it must have done, and its raw-SQL twin."""

    operation: str
    field: str
    mutation: str
    variables: Callable[[Catalog], dict[str, Any]]
    total: Callable[[Catalog], int]
    succeeded: Callable[[Catalog], int]
    batches: Batches
    files: bool = False


def chunks(ids: Sequence[int], size: int = BATCH) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


async def _batch(
    conn: asyncpg.Connection, catalog: Catalog, job_id: str, sql: str, *args: Any
) -> Any:
    """One transaction: the tenant, the statement, the progress row."""
    async with conn.transaction():
        await conn.execute(SET_TENANT, catalog.tenant.id)
        row = await conn.fetchrow(sql, *args)
        ids: list[int] = args[0]
        await conn.execute(PROGRESS, job_id, ids[-1], len(ids), row["changed"])
    return row


async def delete_batches(
    conn: asyncpg.Connection, catalog: Catalog, job_id: str
) -> tuple[int, int, list[str]]:
    changed, keys, batches = 0, [], chunks(catalog.delete_ids)
    for ids in batches:
        row = await _batch(conn, catalog, job_id, DELETE, ids)
        changed += row["changed"]
        keys.extend(row["keys"])
    return len(batches), changed, keys


async def status_batches(
    conn: asyncpg.Connection, catalog: Catalog, job_id: str
) -> tuple[int, int, list[str]]:
    cursor, batches, changed = 0, 0, 0
    while True:
        async with conn.transaction():
            await conn.execute(SET_TENANT, catalog.tenant.id)
            ids = [r["id"] for r in await conn.fetch(NEXT_BY_STATUS, cursor, BATCH, ["ARCHIVED"])]
            if not ids:
                return batches, changed, []
            row = await conn.fetchrow(SET_STATUS, ids, "ACTIVE")
            await conn.execute(PROGRESS, job_id, ids[-1], len(ids), row["changed"])
        cursor, batches, changed = ids[-1], batches + 1, changed + row["changed"]
        if len(ids) < BATCH:
            return batches, changed, []


async def add_batches(
    conn: asyncpg.Connection, catalog: Catalog, job_id: str
) -> tuple[int, int, list[str]]:
    changed, batches = 0, chunks(catalog.add_ids)
    for ids in batches:
        async with conn.transaction():
            await conn.execute(SET_TENANT, catalog.tenant.id)
            await conn.fetchval(LOCK_DATASET, catalog.dataset_id)
            row = await conn.fetchrow(ADD, ids, catalog.dataset_id)
            await conn.execute(PROGRESS, job_id, ids[-1], len(ids), row["changed"])
        changed += row["changed"]
    return len(batches), changed, []


DELETE_CASE = BulkCase(
    operation="deleteProducts",
    field="deleteProducts",
    mutation=DELETE_MUTATION,
    variables=lambda c: {"ids": [str(i) for i in c.delete_ids]},
    total=lambda c: len(c.delete_ids),
    succeeded=lambda c: len(c.delete_ids),
    batches=delete_batches,
    files=True,
)
STATUS_CASE = BulkCase(
    operation="setProductStatus",
    field="setProductStatus",
    mutation=STATUS_MUTATION,
    variables=lambda c: {},
    total=lambda c: c.archived,
    succeeded=lambda c: c.archived,
    batches=status_batches,
)
ADD_CASE = BulkCase(
    operation="addProductsToDataset",
    field="addProductsToDataset",
    mutation=ADD_MUTATION,
    variables=lambda c: {"dataset": str(c.dataset_id), "ids": [str(i) for i in c.add_ids]},
    total=lambda c: len(c.add_ids),
    # A tenth of them are in the dataset already.
    succeeded=lambda c: len(c.add_ids) - (len(c.add_ids) + 9) // 10,
    batches=add_batches,
)


def check_final(case: BulkCase, catalog: Catalog, final: dict[str, Any], label: str) -> None:
    total, succeeded = case.total(catalog), case.succeeded(catalog)
    if (
        final["status"] != "SUCCEEDED"
        or final["processed"] != total
        or final["succeeded"] != succeeded
    ):
        raise BenchError(
            f"{label}: ended {final['status']}, processed {final['processed']}/{total}, "
            f"succeeded {final['succeeded']}/{succeeded}"
        )


After = Callable[[TimedJob], Awaitable[dict[str, Any]]]


async def run_ours(
    h: Harness,
    case: BulkCase,
    label: str,
    *,
    workers: int = 1,
    files: bool | None = None,
    after: After | None = None,
) -> tuple[TimedJob, dict[str, Any]]:
    """One background run on a fresh catalog (with the case's stored files unless `files`
    says otherwise). `after` runs once the terminal state is seen, with the processes
    still up (to wait for the stored files' removal)."""
    await h.fresh(files=case.files if files is None else files)
    catalog = h.catalog
    async with h.running(label, workers=workers) as stack:
        send = mutation_sender(
            catalog.tenant.token, case.mutation, case.variables(catalog), case.field
        )
        timed = await timed_job(stack, catalog.tenant.token, send, timeout=JOB_TIMEOUT)
        extra = await after(timed) if after is not None else {}
    check_final(case, catalog, timed.final, label)
    times = await h.job_times([timed.job_id])
    extra.update(pickup_s=times[timed.job_id].pickup_s, worked_s=times[timed.job_id].worked_s)
    return timed, extra


async def run_baseline(h: Harness, case: BulkCase, label: str) -> BaselineRun:
    """One raw-SQL run on a fresh catalog (stored files are timed apart: unlink_once)."""
    await h.fresh()
    catalog = h.catalog
    conn = await connect_app(catalog.work_url)
    try:
        async with conn.transaction():
            await conn.execute(SET_TENANT, catalog.tenant.id)
            job_id = str(await conn.fetchval(START_PROGRESS, case.operation, case.total(catalog)))
        settle_disk()
        started = time.perf_counter()
        batches, changed, keys = await case.batches(conn, catalog, job_id)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    if changed != case.succeeded(catalog):
        raise BenchError(f"{label}: changed {changed}, expected {case.succeeded(catalog)}")
    return BaselineRun(seconds, batches, changed, keys)


async def unlink_once(h: Harness) -> float:
    """os.unlink, one after another, of the stored files W1 deletes, written afresh and at
    rest on disk: what a raw script does after its deletes. Timed once, not per run:
    writing and removing 100,000 files takes most of a minute here."""
    await h.fresh(files=True)
    root = h.catalog.run_files
    paths = [os.path.join(root, key) for key in h.catalog.file_keys.read_text().split()]
    settle_disk()
    started = time.perf_counter()
    for path in paths:
        os.unlink(path)
    return time.perf_counter() - started


def purge_waiter(h: Harness) -> After:
    async def wait(timed: TimedJob) -> dict[str, Any]:
        """Until no stored file waits for removal; seconds from the mutation."""
        at_terminal = count_files(h.catalog.run_files)
        conn = await h.owner()
        try:
            deadline = time.monotonic() + PURGE_TIMEOUT
            while await conn.fetchval("SELECT count(*) FROM file_deletions"):
                if time.monotonic() > deadline:
                    raise BenchError("stored files were not removed in time")
                await asyncio.sleep(0.05)
        finally:
            await conn.close()
        gone_s = time.perf_counter() - timed.started
        left = count_files(h.catalog.run_files)
        if left:
            raise BenchError(f"{left} stored files left after the purge")
        return {"files_gone_s": gone_s, "files_at_terminal": at_terminal}

    return wait


Runs = list[tuple[TimedJob, dict[str, Any]]]


async def measure(h: Harness, case: BulkCase, wid: str) -> tuple[Runs, list[BaselineRun]]:
    """`plan.runs` interleaved ours/baseline pairs."""
    ours: Runs = []
    base: list[BaselineRun] = []
    for run in range(1, h.plan.runs + 1):
        after = purge_waiter(h) if case.files else None
        ours.append(await run_ours(h, case, f"{wid}-{run}", after=after))
        base.append(await run_baseline(h, case, f"{wid}-{run}-baseline"))
        log(f"{wid} run {run}: ours {ours[-1][0].seconds:.3f} s, baseline {base[-1].seconds:.3f} s")
    return ours, base


def _common(ours: Runs, base: list[BaselineRun]) -> dict[str, Any]:
    return {
        "ours_s": [round(t.seconds, 3) for t, _ in ours],
        "baseline_s": [round(b.seconds, 3) for b in base],
        "mutation_s": [round(t.mutation_s, 3) for t, _ in ours],
        "pickup_s": [round(e["pickup_s"], 3) for _, e in ours],
        "worked_s": [round(e["worked_s"], 3) for _, e in ours],
        "states_seen": [len(t.seen) for t, _ in ours],
        "baseline_batches": base[0].batches,
    }


def _result(ours: Runs, base: list[BaselineRun], what: str, extra_note: str = "") -> Result:
    ours_s = median(t.seconds for t, _ in ours)
    base_s = median(b.seconds for b in base)
    ratio = ours_s / base_s
    note = (
        f"{what}; median of {len(ours)}; mutation answered in "
        f"{median(t.mutation_s for t, _ in ours):.2f} s, job ran "
        f"{median(e['worked_s'] for _, e in ours):.2f} s" + extra_note
    )
    return Result(
        ours=ours_s,
        baseline=base_s,
        unit="s",
        target="ratio <= 1.5",
        met=ratio <= 1.5,
        note=note,
        details=_common(ours, base),
    )


async def w1(h: Harness) -> Result:
    """Delete a tenth of the catalog by id, cascading to images, datasets, stored files."""
    ours, base = await measure(h, DELETE_CASE, "W1")
    unlink_s = await unlink_once(h)
    n = DELETE_CASE.total(h.catalog)
    gone = median(e["files_gone_s"] for _, e in ours)
    raw_gone = median(b.seconds for b in base) + unlink_s
    result = _result(
        ours,
        base,
        f"{n:,} products by id",
        f"; every stored file gone after {gone:.1f} s (raw SQL + os.unlink: {raw_gone:.1f} s)",
    )
    result.details.update(
        files_gone_s=[round(e["files_gone_s"], 3) for _, e in ours],
        files_at_terminal=[e["files_at_terminal"] for _, e in ours],
        baseline_unlink_s=round(unlink_s, 3),
    )
    return result


async def w2(h: Harness) -> Result:
    """Set the status of a tenth of the catalog, selected by a filter."""
    ours, base = await measure(h, STATUS_CASE, "W2")
    n = STATUS_CASE.total(h.catalog)
    return _result(ours, base, f"{n:,} products by filter")


async def w3(h: Harness) -> Result:
    """Add a tenth of the catalog to a dataset already holding a tenth of them."""
    ours, base = await measure(h, ADD_CASE, "W3")
    n = ADD_CASE.total(h.catalog)
    return _result(ours, base, f"{n:,} products by id, 10% already in it")
