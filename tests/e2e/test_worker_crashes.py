"""A worker process killed with SIGKILL at random moments, again and again: the job still
ends with exactly the state of an uninterrupted run, every item applied once."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import ADD_TO_DATASET
from tests.support import GraphQLClient, Tenant, make_dataset, make_products, start_bulkops

TERMINAL = ("SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED")


def start_worker(settings: Settings, log: Path, **overrides: str) -> subprocess.Popen[bytes]:
    env = {
        "BULKOPS_BATCH_SIZE": "50",
        "BULKOPS_SLICE_SECONDS": "1",
        "BULKOPS_LEASE_SECONDS": "1",
        "BULKOPS_RECONCILE_EVERY_SECONDS": "1",
        "BULKOPS_WORKER_POLL_DELAY": "0.05",
        **overrides,
    }
    return start_bulkops(settings, log, "worker", **env)


async def job_row(owner: asyncpg.Connection, job_id: str) -> asyncpg.Record:
    row = await owner.fetchrow(
        "SELECT status, processed, succeeded, failed, skipped, slices FROM jobs WHERE id = $1",
        job_id,
    )
    assert row is not None
    return row


async def wait_for_progress(owner: asyncpg.Connection, job_id: str, since: int) -> float:
    """Seconds until the job's processed count passes `since` (or it ends)."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        row = await job_row(owner, job_id)
        if row["processed"] > since or row["status"] in TERMINAL:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError("the job made no progress within 60 seconds")


@pytest.mark.parametrize(
    ("products", "kills"),
    [(20_000, 20), pytest.param(200_000, 30, marks=pytest.mark.slow)],
)
async def test_sigkilled_workers_never_lose_or_repeat_a_batch(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tmp_path: Path,
    products: int,
    kills: int,
) -> None:
    await make_products(owner, storage, tenant, products, with_images=False)
    dataset = await make_dataset(owner, tenant, "Everything")
    queued = (
        await gql(
            ADD_TO_DATASET,
            {
                "datasetId": str(dataset),
                "selection": {"filter": {}},
                "options": {"mode": "BACKGROUND"},
            },
        )
    )["addProductsToDataset"]
    job_id = queued["job"]["id"]
    log = tmp_path / "workers.log"
    rng = random.Random(20261123)
    recoveries = []
    killed = 0
    while killed < kills:
        before = (await job_row(owner, job_id))["processed"]
        worker = start_worker(settings, log)
        try:
            if rng.random() < 0.3:
                # Anywhere: while starting, claiming, or in a batch.
                await asyncio.sleep(rng.uniform(0.2, 1.5))
            else:
                # Time from a worker's start (the last one was SIGKILLed) to progress again.
                recoveries.append(await wait_for_progress(owner, job_id, before))
                await asyncio.sleep(rng.uniform(0.0, 0.08))
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        killed += 1
        if (await job_row(owner, job_id))["status"] in TERMINAL:
            break
    assert killed >= min(kills, 10), f"the job ended after only {killed} kills"

    worker = start_worker(settings, log)
    try:
        deadline = time.monotonic() + 120
        while (row := await job_row(owner, job_id))["status"] not in TERMINAL:
            assert time.monotonic() < deadline, f"job stuck: {dict(row)}"
            await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    row = await job_row(owner, job_id)
    # Exactly an uninterrupted run: every product added once, none counted twice.
    assert (row["status"], row["processed"], row["succeeded"], row["skipped"], row["failed"]) == (
        "SUCCEEDED",
        products,
        products,
        0,
        0,
    ), (dict(row), log.read_text()[-3000:])
    members = await owner.fetchval(
        "SELECT count(*) FROM dataset_products WHERE dataset_id = $1", dataset
    )
    assert members == products
    assert await owner.fetchval("SELECT count(*) FROM job_errors") == 0
    print(
        f"\nkills survived: {killed}; slices: {row['slices']}; "
        f"restart-to-progress seconds: max {max(recoveries):.2f}, "
        f"median {sorted(recoveries)[len(recoveries) // 2]:.2f}"
    )


async def test_sigterm_stops_a_worker_at_a_batch_boundary_and_the_job_goes_on(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    await make_products(owner, storage, tenant, 3000, with_images=False)
    dataset = await make_dataset(owner, tenant, "Everything")
    queued = (
        await gql(
            ADD_TO_DATASET,
            {
                "datasetId": str(dataset),
                "selection": {"filter": {}},
                "options": {"mode": "BACKGROUND"},
            },
        )
    )["addProductsToDataset"]
    job_id = queued["job"]["id"]
    log = tmp_path / "workers.log"
    # Slow batches and long slices: only SIGTERM can make this worker stop early.
    worker = start_worker(
        settings, log, BULKOPS_BATCH_PAUSE_SECONDS="0.1", BULKOPS_SLICE_SECONDS="60"
    )
    await wait_for_progress(owner, job_id, 0)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, log.read_text()[-3000:]
    stopped = await job_row(owner, job_id)
    assert stopped["status"] == "RUNNING"
    assert 0 < stopped["processed"] < 3000
    lease = await owner.fetchval("SELECT lease_owner FROM jobs WHERE id = $1", job_id)
    assert lease is None

    worker = start_worker(settings, log)
    try:
        deadline = time.monotonic() + 60
        while (row := await job_row(owner, job_id))["status"] not in TERMINAL:
            assert time.monotonic() < deadline, f"job stuck: {dict(row)}"
            await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    row = await job_row(owner, job_id)
    assert (row["status"], row["succeeded"], row["skipped"]) == ("SUCCEEDED", 3000, 0)
