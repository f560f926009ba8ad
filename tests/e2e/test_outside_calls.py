"""Jobs that call an outside service, run by real `bulkops worker` processes against a fake
OpenAI-compatible provider (tests/fake_llm.py) that enforces its own rate limit: what
the provider sees (calls let through, 429s, calls repeated) and what the user sees (job
states, counters, descriptions written)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import CANCEL, SUMMARY_FIELDS
from tests.fake_llm import FakeLLM, answer_for
from tests.support import GraphQLClient, Tenant, make_products, start_bulkops

T = TypeVar("T")

TERMINAL = ("SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED")
# The provider's own limit, and what the workers are told it is.
PROVIDER_RPS = 20

ENRICH = f"""
mutation($selection: ProductSelection!, $instructions: EnrichInstructions!,
         $options: BulkOptions) {{
  enrichProducts(selection: $selection, instructions: $instructions, options: $options) {{
    {SUMMARY_FIELDS}
  }}
}}"""

JOB_WAITING = """
query($id: ID!) { job(id: $id) { status waitingReason processed succeeded failed } }"""


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, llm: FakeLLM) -> Settings:
    """The API's settings: a provider is configured (the workers get theirs from env)."""
    return settings.model_copy(update={"llm_base_url": llm.base_url})


class Workers:
    """`bulkops worker` processes, all logging to one file, each stopped at the end."""

    def __init__(self, settings: Settings, llm: FakeLLM, log: Path) -> None:
        self.settings = settings
        self.llm = llm
        self.log = log
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, **overrides: str) -> subprocess.Popen[bytes]:
        env = {
            "BULKOPS_LLM_BASE_URL": self.llm.base_url,
            "BULKOPS_LLM_REQUESTS_PER_SECOND": str(PROVIDER_RPS),
            "BULKOPS_LLM_CONCURRENCY": "8",
            "BULKOPS_LLM_TIMEOUT_SECONDS": "5",
            "BULKOPS_BATCH_SIZE": "32",
            "BULKOPS_SLICE_SECONDS": "2",
            "BULKOPS_LEASE_SECONDS": "3",
            "BULKOPS_RECONCILE_EVERY_SECONDS": "1",
            "BULKOPS_WORKER_POLL_DELAY": "0.05",
            **overrides,
        }
        worker = start_bulkops(self.settings, self.log, "worker", **env)
        self.started.append(worker)
        return worker

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def stop_all(self) -> None:
        """SIGTERM, then SIGKILL for a worker still running 15 s later. The test's event
        loop keeps running meanwhile: it serves the provider the workers still call."""
        for worker in self.started:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for _ in range(300):
            if all(w.poll() is not None for w in self.started):
                break
            await asyncio.sleep(0.05)
        for worker in self.started:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait()


@pytest.fixture
async def workers(settings: Settings, llm: FakeLLM, tmp_path: Path) -> AsyncIterator[Workers]:
    running = Workers(settings, llm, tmp_path / "workers.log")
    try:
        yield running
    finally:
        await running.stop_all()


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, *, within: float = 45.0
) -> T:
    """Poll `check` until it returns something (not None); fail naming `what`."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"not within {within:.0f} s: {what}"
        await asyncio.sleep(0.05)


async def job_row(owner: asyncpg.Connection, job_id: str) -> asyncpg.Record:
    row = await owner.fetchrow(
        """SELECT status, total, processed, succeeded, failed, skipped, lease_owner, usage
           FROM jobs WHERE id = $1""",
        job_id,
    )
    assert row is not None
    return row


async def ended(owner: asyncpg.Connection, job_id: str, workers: Workers) -> asyncpg.Record:
    async def check() -> asyncpg.Record | None:
        row = await job_row(owner, job_id)
        return row if row["status"] in TERMINAL else None

    try:
        return await eventually(check, f"job {job_id} ends")
    except AssertionError as exc:
        row = await job_row(owner, job_id)
        raise AssertionError(f"{exc}: {dict(row)}\n{workers.tail()}") from None


async def enrich(gql: GraphQLClient, ids: list[int]) -> str:
    queued = (
        await gql(
            ENRICH,
            {
                "selection": {"ids": [str(i) for i in ids]},
                "instructions": {"prompt": "Write about {name}", "target": "description"},
                "options": {"mode": "BACKGROUND"},
            },
        )
    )["enrichProducts"]
    assert queued["__typename"] == "JobQueued", queued
    job_id: str = queued["job"]["id"]
    return job_id


async def descriptions(owner: asyncpg.Connection, ids: list[int]) -> list[str | None]:
    rows = await owner.fetch(
        "SELECT description FROM products WHERE id = ANY($1::bigint[]) ORDER BY id", ids
    )
    return [r["description"] for r in rows]


def expected(first: int, count: int) -> list[str]:
    """The fake's answers for products `Product {first}` ... (make_products' names)."""
    return [answer_for(f"Write about Product {n}") for n in range(first, first + count)]


def pid_of(lease_owner: str | None) -> int | None:
    """The worker process named by a lease (host:pid:nonce)."""
    return int(lease_owner.split(":")[1]) if lease_owner else None


async def test_two_workers_together_stay_under_the_providers_limit(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
    workers: Workers,
) -> None:
    llm.rps = PROVIDER_RPS
    ids = await make_products(owner, storage, tenant, 240, with_images=False)
    jobs = [await enrich(gql, ids[:120]), await enrich(gql, ids[120:])]
    # One slice at a time each: both jobs running at once means both workers run one.
    started = [workers.start(BULKOPS_WORKER_MAX_JOBS="1") for _ in range(2)]
    pids = {w.pid for w in started}

    together: set[frozenset[int]] = set()

    async def both_done() -> bool | None:
        rows = [await job_row(owner, job_id) for job_id in jobs]
        holders = {pid_of(r["lease_owner"]) for r in rows if r["status"] == "RUNNING"}
        if len(holders) == 2 and None not in holders:
            together.add(frozenset(pid for pid in holders if pid is not None))
        return True if all(r["status"] in TERMINAL for r in rows) else None

    await eventually(both_done, "both jobs end")
    rows = [await job_row(owner, job_id) for job_id in jobs]
    for row in rows:
        assert (row["status"], row["succeeded"], row["failed"], row["skipped"]) == (
            "SUCCEEDED",
            120,
            0,
            0,
        ), (dict(row), workers.tail())
    # Both workers ran a job at the same moment.
    assert frozenset(pids) in together, (together, pids)
    assert await descriptions(owner, ids) == expected(1, 240)

    refused = [c for c in llm.calls if c.outcome == "rate_limited"]
    # The fake refuses past its limit, so what it let through never passes it; what
    # matters is that the workers, each allowed the whole rate, together kept to it
    # (two processes pacing themselves alone would see about half their calls refused).
    assert llm.busiest_window() <= PROVIDER_RPS
    assert len(refused) <= 5, (len(refused), llm.stats())
    assert len(llm.answered) >= 240
    assert len(llm.keys_seen()) == 240


WRITES_TRIGGER = """
CREATE TABLE description_writes (product_id bigint NOT NULL);
CREATE FUNCTION note_description_write() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
  INSERT INTO description_writes (product_id) VALUES (NEW.id);
  RETURN NULL;
END $$;
CREATE TRIGGER description_written AFTER UPDATE OF description ON products
  FOR EACH ROW EXECUTE FUNCTION note_description_write();
"""


async def test_a_worker_killed_mid_batch_repeats_at_most_that_batchs_calls(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
    workers: Workers,
) -> None:
    llm.latency = 0.3
    batch = 32
    ids = await make_products(owner, storage, tenant, 200, with_images=False)
    # Every write of a description, counted by the database itself.
    await owner.execute(WRITES_TRIGGER)
    job_id = await enrich(gql, ids)
    tuned = {
        "BULKOPS_BATCH_SIZE": str(batch),
        "BULKOPS_LLM_CONCURRENCY": "16",
        "BULKOPS_LLM_REQUESTS_PER_SECOND": "200",
    }
    first = workers.start(**tuned)

    async def into_second_batch() -> bool | None:
        return True if len(llm.answered) >= batch + 8 else None

    await eventually(into_second_batch, "the provider answers the second batch's first calls")
    first.send_signal(signal.SIGKILL)
    first.wait()
    answered_before = {c.idempotency_key for c in llm.answered}
    written_before = await owner.fetchval("SELECT count(*) FROM description_writes")
    row = await job_row(owner, job_id)
    assert row["status"] == "RUNNING"
    # Killed mid-batch: calls were answered whose results were never written.
    assert row["processed"] == written_before < len(answered_before), (dict(row), written_before)

    workers.start(**tuned)
    row = await ended(owner, job_id, workers)
    assert (row["status"], row["processed"], row["succeeded"], row["failed"]) == (
        "SUCCEEDED",
        200,
        200,
        0,
    ), (dict(row), workers.tail())
    assert row["skipped"] == 0
    assert await descriptions(owner, ids) == expected(1, 200)
    writes = await owner.fetch(
        "SELECT product_id, count(*) AS n FROM description_writes GROUP BY product_id"
    )
    assert sorted(r["product_id"] for r in writes) == ids
    assert {r["n"] for r in writes} == {1}
    # Only the killed batch's calls were made twice, with the same keys.
    repeated = llm.duplicates()
    assert 0 < len(repeated) <= batch, repeated
    killed_batch = ids[written_before : written_before + batch]
    assert {int(key.rsplit("-", 1)[1]) for key in repeated} <= set(killed_batch), repeated
    assert len(llm.keys_seen()) == 200


async def test_a_small_job_of_another_tenant_is_done_while_a_big_one_runs(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
    llm: FakeLLM,
    workers: Workers,
) -> None:
    llm.rps = PROVIDER_RPS
    big_ids = await make_products(owner, storage, tenant, 400, with_images=False)
    small_ids = await make_products(owner, storage, other_tenant, 10, with_images=False)
    big = await enrich(gql, big_ids)
    workers.start()
    workers.start()

    async def big_running() -> bool | None:
        row = await job_row(owner, big)
        return True if row["status"] == "RUNNING" and len(llm.answered) >= 10 else None

    await eventually(big_running, "the big job runs")
    small = await enrich(GraphQLClient(http, other_tenant.token), small_ids)
    small_row = await ended(owner, small, workers)
    big_row = await job_row(owner, big)
    assert (small_row["status"], small_row["succeeded"]) == ("SUCCEEDED", 10), dict(small_row)
    assert await descriptions(owner, small_ids) == expected(1, 10)
    # Served in turns with the big job, not after it.
    assert big_row["status"] == "RUNNING", dict(big_row)
    assert big_row["processed"] < 400, dict(big_row)
    cancelled = (await gql(CANCEL, {"id": big}))["cancelJob"]
    assert cancelled["__typename"] == "Job", cancelled
    assert llm.busiest_window() <= PROVIDER_RPS


async def test_an_outage_is_waited_out_and_no_item_fails(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    llm: FakeLLM,
    workers: Workers,
) -> None:
    llm.latency = 0.05
    ids = await make_products(owner, storage, tenant, 150, with_images=False)
    job_id = await enrich(gql, ids)
    # A circuit that opens for 2 s at first (10 s by default): long enough that the second
    # below sees at most one probe, short enough that the test does not sit it out.
    workers.start(
        BULKOPS_LLM_REQUESTS_PER_SECOND="100",
        BULKOPS_LLM_CONCURRENCY="4",
        BULKOPS_OUTSIDE_CIRCUIT_OPEN_SECONDS="2",
    )

    async def some_answered() -> bool | None:
        return True if len(llm.answered) >= 40 else None

    await eventually(some_answered, "the provider answers some calls")
    llm.down = True

    async def waiting() -> dict[str, Any] | None:
        job: dict[str, Any] = (await gql(JOB_WAITING, {"id": job_id}))["job"]
        return job if job["waitingReason"] is not None else None

    job = await eventually(waiting, "the job says it waits for the provider")
    down_calls = sum(1 for c in llm.calls if c.outcome == "down")
    assert job["status"] == "RUNNING", job
    assert job["failed"] == 0, job
    assert "unavailable" in job["waitingReason"] and "next try" in job["waitingReason"], job
    assert 0 < job["processed"] < 150, job

    # While the circuit is open nobody calls: the outage costs a handful of calls.
    await asyncio.sleep(1.0)
    assert sum(1 for c in llm.calls if c.outcome == "down") <= down_calls + 1
    llm.down = False

    row = await ended(owner, job_id, workers)
    assert (row["status"], row["succeeded"], row["failed"], row["skipped"]) == (
        "SUCCEEDED",
        150,
        0,
        0,
    ), (dict(row), workers.tail())
    job = (await gql(JOB_WAITING, {"id": job_id}))["job"]
    assert job["waitingReason"] is None, job
    assert await descriptions(owner, ids) == expected(1, 150)
