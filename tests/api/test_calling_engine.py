"""A calling operation defined here (its batch step calls a small HTTP service started by
the test), run inline and as jobs: every product is written once, item errors make a
PARTIAL job, a provider outage fails no item and shows why the job waits, a cancel stops
new calls, and a stop reason ends the job with the rest skipped."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bulkops.config import Settings
from bulkops.errors import InputError
from bulkops.operations import REGISTRY, Registry
from bulkops.operations.base import BatchContext, BatchOutcome, NoParams, Thresholds
from bulkops.operations.calling import CallBatch, CallContext, CallingOperation
from bulkops.outside import CallFailed, Limits, ProviderUnavailable, Usage
from bulkops.storage import Storage
from tests.api.queries import CANCEL, SET_STATUS
from tests.serving import QuickServer
from tests.support import GraphQLClient, Tenant, make_products, run_worker


class Tagger:
    """The outside service: POST /tag answers a tag for a product. `down` makes it answer
    503; SKUs in `refuse` get a 400; while `gate` is not set, calls wait for it."""

    def __init__(self) -> None:
        self.down = False
        self.refuse: set[str] = set()
        self.gate = asyncio.Event()
        self.gate.set()
        # What RemoteTagLimited's calls wait for, as if for a rate limiter.
        self.limiter = asyncio.Event()
        self.calls: list[tuple[int, str]] = []
        self._server: QuickServer | None = None
        self._task: asyncio.Task[None] | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tag"

    async def _tag(self, request: Request) -> Response:
        body = await request.json()
        self.calls.append((body["id"], request.headers["Idempotency-Key"]))
        await self.gate.wait()
        if self.down:
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if body["sku"] in self.refuse:
            return JSONResponse({"error": f"cannot tag {body['sku']}"}, status_code=400)
        return JSONResponse({"tag": f"tag-{body['sku']}", "tokens": [10, 5]})

    async def start(self) -> None:
        app = Starlette(routes=[Route("/tag", self._tag, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = QuickServer(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self.gate.set()
        self._server.stop()
        done, _ = await asyncio.wait({self._task}, timeout=5)
        if not done:
            self._server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


TAGGER = Tagger()


@dataclass(frozen=True)
class Untagged:
    id: int
    sku: str


class RemoteTag(CallingOperation[NoParams, Untagged, str]):
    """Ask the tagger for each product's tag; write it as the attribute remoteTag."""

    name = "remoteTag"
    description = "Tag products through the outside tagger (attribute remoteTag)."
    thresholds = Thresholds(inline_threshold=5, inline_limit=20, batch_size=3)
    params_model = NoParams
    provider = "tagger"

    def limits(self, settings: Settings) -> Limits:
        return Limits(concurrency=2)

    async def read_items(
        self, ctx: BatchContext, params: NoParams, ids: list[int]
    ) -> CallBatch[Untagged]:
        rows = await ctx.conn.fetch(
            """SELECT id, sku, attributes ? 'remoteTag' AS tagged FROM products
               WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id() ORDER BY id""",
            ids,
        )
        tagged = sum(1 for r in rows if r["tagged"])
        return CallBatch(
            [Untagged(r["id"], r["sku"]) for r in rows if not r["tagged"]],
            BatchOutcome(skipped=tagged + len(ids) - len(rows)),
        )

    async def call(self, calls: CallContext, params: NoParams, item: Untagged) -> str:
        # Counted as the call starts, as the outside client counts an attempt.
        calls.usage.calls += 1
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                TAGGER.url,
                json={"id": item.id, "sku": item.sku},
                headers={"Idempotency-Key": calls.idempotency_key(item.id)},
            )
        if response.status_code == 503:
            next_try = time.time() + 1
            shown = datetime.fromtimestamp(next_try, UTC).strftime("%H:%M:%S")
            raise ProviderUnavailable(
                self.provider, f"provider unavailable, next try {shown}", next_try_at=next_try
            )
        if response.status_code >= 400:
            raise CallFailed(response.json()["error"], code="REFUSED", status=response.status_code)
        answer = response.json()
        calls.usage.tokens_in += answer["tokens"][0]
        calls.usage.tokens_out += answer["tokens"][1]
        tag: str = answer["tag"]
        return tag

    async def write_results(
        self, ctx: BatchContext, params: NoParams, done: list[tuple[Untagged, str]]
    ) -> BatchOutcome:
        await ctx.conn.execute(
            """UPDATE products p SET attributes = p.attributes || jsonb_build_object(
                 'remoteTag', d.tag,
                 'writes', COALESCE((p.attributes->>'writes')::int, 0) + 1)
               FROM unnest($1::bigint[], $2::text[]) AS d(id, tag)
               WHERE p.id = d.id AND p.tenant_id = current_tenant_id()""",
            [item.id for item, _ in done],
            [tag for _, tag in done],
        )
        return BatchOutcome(succeeded=len(done), changed_ids=[item.id for item, _ in done][:10])


class RemoteTagOnBudget(RemoteTag):
    """The same, stopping once four calls are used."""

    name = "remoteTagOnBudget"
    description = "Tag products through the outside tagger, at most four calls."

    def stop_reason(self, params: NoParams, used: Usage) -> str | None:
        return "The budget of 4 calls is used up." if used.calls >= 4 else None


class RemoteTagLimited(RemoteTag):
    """The same, each call first waiting for `TAGGER.limiter` as the outside client's
    calls wait for the shared rate limiter (counted in `waiting_now` meanwhile)."""

    name = "remoteTagLimited"
    description = "Tag products through the outside tagger, waiting for a rate limit."

    async def call(self, calls: CallContext, params: NoParams, item: Untagged) -> str:
        began = time.monotonic()
        calls.usage.waiting_now += 1
        try:
            await TAGGER.limiter.wait()
        finally:
            calls.usage.waiting_now -= 1
            calls.usage.waited_seconds += time.monotonic() - began
        return await super().call(calls, params, item)


class RemoteTagUnconfigured(RemoteTag):
    """The same, with its provider never set up."""

    name = "remoteTagUnconfigured"
    description = "Tag products through a tagger that is not configured."

    def check_configured(self, settings: Settings) -> None:
        raise InputError(
            "No tagger is configured: set BULKOPS_TAGGER_URL.", code="PROVIDER_NOT_CONFIGURED"
        )


WITH_TAGGER = REGISTRY.with_operations(
    RemoteTag(), RemoteTagOnBudget(), RemoteTagLimited(), RemoteTagUnconfigured()
)


@pytest.fixture
def operations() -> Registry:
    return WITH_TAGGER


@pytest.fixture
async def tagger() -> AsyncIterator[Tagger]:
    TAGGER.down = False
    TAGGER.refuse = set()
    TAGGER.calls = []
    TAGGER.gate.set()
    TAGGER.limiter.set()
    await TAGGER.start()
    yield TAGGER
    await TAGGER.stop()


def mutation(name: str) -> str:
    summary = name[0].upper() + name[1:] + "Summary"
    return f"""
mutation($selection: ProductSelection!, $options: BulkOptions) {{
  {name}(selection: $selection, options: $options) {{
    __typename
    ... on {summary} {{
      matched succeeded failed skipped dryRun errors {{ itemId code message }}
      sample {{ id }}
    }}
    ... on JobQueued {{ job {{ id status total }} }}
    ... on Rejected {{ code field }}
  }}
}}"""


JOB = """
query($id: ID!) {
  job(id: $id) {
    status processed succeeded failed skipped currentStep waitingReason result
    usage { calls retries rateLimited tokensIn tokensOut waitedSeconds }
    errors(first: 100) { totalCount edges { node { itemId code message } } }
  }
}"""


async def tags(owner: asyncpg.Connection, tenant: Tenant) -> list[tuple[str | None, int]]:
    """Each product's tag and how many times it was written, in id order."""
    rows = await owner.fetch(
        """SELECT attributes->>'remoteTag' AS tag,
                  COALESCE((attributes->>'writes')::int, 0) AS writes
           FROM products WHERE tenant_id = $1 ORDER BY id""",
        tenant.id,
    )
    return [(r["tag"], r["writes"]) for r in rows]


async def queue_job(gql: GraphQLClient, name: str = "remoteTag") -> str:
    data = await gql(
        mutation(name),
        {"selection": {"filter": {"brand": ["Acme"]}}, "options": {"mode": "BACKGROUND"}},
    )
    assert data[name]["__typename"] == "JobQueued", data
    job_id: str = data[name]["job"]["id"]
    return job_id


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_an_inline_run_calls_and_writes_each_product_once(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    tagger: Tagger,
) -> None:
    ids = await make_products(owner, storage, tenant, 6, with_images=False)
    chosen = {"ids": [str(i) for i in ids[:4]]}
    dry = await gql(mutation("remoteTag"), {"selection": chosen, "options": {"dryRun": True}})
    assert dry["remoteTag"]["dryRun"] is True
    assert (dry["remoteTag"]["matched"], dry["remoteTag"]["succeeded"]) == (4, 4)
    assert [p["id"] for p in dry["remoteTag"]["sample"]] == chosen["ids"]
    assert tagger.calls == []

    data = await gql(mutation("remoteTag"), {"selection": chosen})
    summary = data["remoteTag"]
    assert summary["__typename"] == "RemoteTagSummary"
    assert (summary["matched"], summary["succeeded"], summary["failed"]) == (4, 4, 0)
    assert await tags(owner, tenant) == [
        ("tag-SKU-0000001", 1),
        ("tag-SKU-0000002", 1),
        ("tag-SKU-0000003", 1),
        ("tag-SKU-0000004", 1),
        (None, 0),
        (None, 0),
    ]
    # Every call carried a key of its own run and item.
    assert sorted(i for i, _ in tagger.calls) == ids[:4]
    assert len({key for _, key in tagger.calls}) == 4

    # Tagged products are settled without a call.
    again = (await gql(mutation("remoteTag"), {"selection": chosen}))["remoteTag"]
    assert (again["succeeded"], again["skipped"]) == (0, 4)
    assert len(tagger.calls) == 4


async def test_a_job_writes_every_product_once_and_counts_its_usage(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tagger: Tagger,
) -> None:
    ids = await make_products(owner, storage, tenant, 8, with_images=False)
    job_id = await queue_job(gql)
    queued = (await gql(JOB, {"id": job_id}))["job"]
    assert queued["usage"] == {
        "calls": 0,
        "retries": 0,
        "rateLimited": 0,
        "tokensIn": 0,
        "tokensOut": 0,
        "waitedSeconds": 0.0,
    }
    # An operation that calls nothing has no usage.
    other = await gql(
        SET_STATUS,
        {
            "selection": {"ids": [str(ids[0])]},
            "status": "ACTIVE",
            "options": {"mode": "BACKGROUND"},
        },
    )
    other_job = (await gql(JOB, {"id": other["setProductStatus"]["job"]["id"]}))["job"]
    assert other_job["usage"] is None
    await run_worker(settings, operations=WITH_TAGGER)

    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"], job["failed"]) == (
        "SUCCEEDED",
        8,
        8,
        0,
    )
    assert job["usage"] == {
        "calls": 8,
        "retries": 0,
        "rateLimited": 0,
        "tokensIn": 80,
        "tokensOut": 40,
        "waitedSeconds": 0.0,
    }
    assert job["waitingReason"] is None
    assert [writes for _, writes in await tags(owner, tenant)] == [1] * 8
    assert sorted(tagger.calls) == [(i, f"bulkops-{job_id}-{i}") for i in ids]


async def test_items_the_provider_refuses_make_a_partial_job(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tagger: Tagger,
) -> None:
    ids = await make_products(owner, storage, tenant, 7, with_images=False)
    tagger.refuse = {"SKU-0000002", "SKU-0000006"}
    job_id = await queue_job(gql)
    await run_worker(settings, operations=WITH_TAGGER)

    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"], job["failed"]) == (
        "PARTIAL",
        7,
        5,
        2,
    )
    errors = [edge["node"] for edge in job["errors"]["edges"]]
    assert sorted(errors, key=lambda e: int(e["itemId"])) == [
        {"itemId": str(ids[1]), "code": "REFUSED", "message": "cannot tag SKU-0000002"},
        {"itemId": str(ids[5]), "code": "REFUSED", "message": "cannot tag SKU-0000006"},
    ]
    written = await tags(owner, tenant)
    assert [w for _, w in written] == [1, 0, 1, 1, 1, 0, 1]


async def test_a_provider_outage_fails_no_item_and_shows_why_the_job_waits(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tagger: Tagger,
) -> None:
    await make_products(owner, storage, tenant, 5, with_images=False)
    tagger.down = True
    job_id = await queue_job(gql)
    worker = asyncio.create_task(run_worker(settings, operations=WITH_TAGGER))
    try:
        seen: dict[str, Any] = {}

        async def waiting() -> bool:
            seen.update((await gql(JOB, {"id": job_id}))["job"])
            return seen["waitingReason"] is not None

        await until(waiting, "the job says why it waits")
        assert seen["status"] == "RUNNING"
        assert seen["waitingReason"].startswith("provider unavailable, next try ")
        assert (seen["processed"], seen["failed"]) == (0, 0)
        tagger.down = False
        await asyncio.wait_for(worker, timeout=60)
    finally:
        worker.cancel()
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"], job["failed"]) == (
        "SUCCEEDED",
        5,
        5,
        0,
    )
    assert job["waitingReason"] is None
    assert [w for _, w in await tags(owner, tenant)] == [1] * 5


async def test_a_provider_down_past_the_hold_hands_the_batch_back(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tagger: Tagger,
) -> None:
    await make_products(owner, storage, tenant, 4, with_images=False)
    tagger.down = True
    held = settings.model_copy(update={"outside_outage_hold_seconds": 0.0})
    job_id = await queue_job(gql)
    worker = asyncio.create_task(run_worker(held, operations=WITH_TAGGER))
    try:

        async def handed_back() -> bool:
            return len(tagger.calls) >= 4

        # The first batch is called, handed back, and called again later.
        await until(handed_back, "the batch is called again")
        tagger.down = False
        await asyncio.wait_for(worker, timeout=60)
    finally:
        worker.cancel()
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("SUCCEEDED", 4, 0)
    assert [w for _, w in await tags(owner, tenant)] == [1] * 4


async def test_a_cancel_stops_new_calls(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tagger: Tagger,
) -> None:
    await make_products(owner, storage, tenant, 8, with_images=False)
    tagger.gate.clear()
    job_id = await queue_job(gql)
    worker = asyncio.create_task(run_worker(settings, operations=WITH_TAGGER))
    try:

        async def two_in_flight() -> bool:
            return len(tagger.calls) == 2

        await until(two_in_flight, "two calls in flight")
        cancelled = await gql(CANCEL, {"id": job_id})
        assert cancelled["cancelJob"]["status"] == "CANCELLING"

        # The worker looks at its job every second while calls run.
        await asyncio.sleep(2.5)
        tagger.gate.set()
        await asyncio.wait_for(worker, timeout=60)
    finally:
        worker.cancel()
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"]) == ("CANCELLED", 2, 2)
    # The calls in flight finished and were written; no other call was made.
    assert len(tagger.calls) == 2
    assert [w for _, w in await tags(owner, tenant)] == [1, 1] + [0] * 6


async def test_a_stop_reason_ends_the_job_with_the_rest_skipped(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tagger: Tagger,
) -> None:
    await make_products(owner, storage, tenant, 8, with_images=False)
    job_id = await queue_job(gql, "remoteTagOnBudget")
    await run_worker(settings, operations=WITH_TAGGER)

    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["processed"], job["succeeded"], job["skipped"]) == (
        "SUCCEEDED",
        8,
        4,
        4,
    )
    assert job["usage"]["calls"] == 4
    assert job["result"]["stopReason"] == "The budget of 4 calls is used up."
    errors = [edge["node"] for edge in job["errors"]["edges"]]
    assert errors == [
        {"itemId": None, "code": "BUDGET_REACHED", "message": "The budget of 4 calls is used up."}
    ]
    assert [w for _, w in await tags(owner, tenant)] == [1] * 4 + [0] * 4
    assert len(tagger.calls) == 4


async def test_a_job_waiting_for_the_rate_limit_says_so(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tagger: Tagger,
) -> None:
    await make_products(owner, storage, tenant, 4, with_images=False)
    tagger.limiter.clear()
    job_id = await queue_job(gql, "remoteTagLimited")
    worker = asyncio.create_task(run_worker(settings, operations=WITH_TAGGER))
    try:
        seen: dict[str, Any] = {}

        async def waiting() -> bool:
            seen.update((await gql(JOB, {"id": job_id}))["job"])
            return bool(seen["currentStep"] == "waiting for rate limit")

        await until(waiting, "the job says it waits for the rate limit")
        assert (seen["status"], seen["processed"]) == ("RUNNING", 0)
        tagger.limiter.set()
        await asyncio.wait_for(worker, timeout=60)
    finally:
        worker.cancel()
    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["currentStep"], job["succeeded"]) == ("SUCCEEDED", "done", 4)
    assert job["usage"]["waitedSeconds"] > 0


async def test_an_inline_run_stops_at_its_budget_and_an_unconfigured_provider_is_refused(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    tagger: Tagger,
) -> None:
    ids = await make_products(owner, storage, tenant, 5, with_images=False)
    chosen = {"ids": [str(i) for i in ids]}
    refused = (await gql(mutation("remoteTagUnconfigured"), {"selection": chosen}))[
        "remoteTagUnconfigured"
    ]
    assert refused == {"__typename": "Rejected", "code": "PROVIDER_NOT_CONFIGURED", "field": None}
    assert tagger.calls == []

    summary = (await gql(mutation("remoteTagOnBudget"), {"selection": chosen}))["remoteTagOnBudget"]
    assert (summary["matched"], summary["succeeded"], summary["skipped"]) == (5, 4, 1)
    assert summary["errors"] == [
        {"itemId": None, "code": "BUDGET_REACHED", "message": "The budget of 4 calls is used up."}
    ]
    assert [w for _, w in await tags(owner, tenant)] == [1, 1, 1, 1, 0]
    assert len(tagger.calls) == 4


async def test_under_abort_a_refused_item_stops_the_run_and_its_batch_is_not_applied(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tagger: Tagger,
) -> None:
    ids = await make_products(owner, storage, tenant, 7, with_images=False)
    # The second batch (products 4 to 6) has a refused item.
    tagger.refuse = {"SKU-0000005"}
    data = await gql(
        mutation("remoteTag"),
        {
            "selection": {"filter": {"brand": ["Acme"]}},
            "options": {"mode": "BACKGROUND", "errorPolicy": "ABORT"},
        },
    )
    job_id = data["remoteTag"]["job"]["id"]
    await run_worker(settings, operations=WITH_TAGGER)

    job = (await gql(JOB, {"id": job_id}))["job"]
    assert (job["status"], job["succeeded"], job["failed"]) == ("FAILED", 3, 1)
    errors = [edge["node"] for edge in job["errors"]["edges"]]
    assert errors == [
        {"itemId": str(ids[4]), "code": "REFUSED", "message": "cannot tag SKU-0000005"}
    ]
    assert [w for _, w in await tags(owner, tenant)] == [1, 1, 1, 0, 0, 0, 0]

    # Inline: the same, the batches before the refused item staying written.
    tagger.refuse = {"SKU-0000006"}
    await owner.execute("UPDATE products SET attributes = '{}' WHERE tenant_id = $1", tenant.id)
    inline = await gql(
        mutation("remoteTag"),
        {
            "selection": {"ids": [str(i) for i in ids[:6]]},
            "options": {"mode": "INLINE", "errorPolicy": "ABORT"},
        },
    )
    summary = inline["remoteTag"]
    assert (summary["succeeded"], summary["failed"]) == (3, 1)
    assert [w for _, w in await tags(owner, tenant)] == [1, 1, 1, 0, 0, 0, 0]
