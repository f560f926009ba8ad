"""W1-W3: a background bulk change of a tenth of the catalog, against its raw-SQL limit.

Ours: the mutation (`mode: BACKGROUND`) sent to a real API process and run by one real worker
process, timed from the mutation being sent to the terminal state seen by a websocket
subscriber. Baseline: bench/workloads/raw_sql.py, on a fresh copy of its own.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.catalog import BenchError, Catalog, connect_app, count_files, log, settle_disk
from bench.clients import TimedJob, mutation_sender, timed_job
from bench.harness import Harness
from bench.results import Result, median
from bench.workloads.raw_sql import (
    SET_TENANT,
    START_PROGRESS,
    add_batches,
    delete_batches,
    status_batches,
)

JOB_TIMEOUT = 1800.0
PURGE_TIMEOUT = 1800.0

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


Batches = Callable[[asyncpg.Connection, Catalog, str], Awaitable[tuple[int, int]]]


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
        batches, changed = await case.batches(conn, catalog, job_id)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    if changed != case.succeeded(catalog):
        raise BenchError(f"{label}: changed {changed}, expected {case.succeeded(catalog)}")
    return BaselineRun(seconds, batches, changed)


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
