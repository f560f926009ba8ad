"""A worker process SIGKILLed while a webhook delivery is in flight: another worker sends
the same event again, under the same webhook-id, once the dead worker's hold lapses."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from standardwebhooks import Webhook
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import SET_STATUS
from tests.outside_server import provider_server
from tests.support import GraphQLClient, Tenant, make_products, start_bulkops

CREATE = """
mutation($url: String!) { createWebhookEndpoint(url: $url, events: ["job.queued"]) {
  ... on CreatedWebhookEndpoint { secret endpoint { id } } } }"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_networks": True})


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return start_bulkops(
        settings,
        log,
        "worker",
        BULKOPS_ALLOW_PRIVATE_NETWORKS="true",
        # An attempt is held for twice this and a second (7 s) before another worker may
        # take the delivery again.
        BULKOPS_WEBHOOK_TIMEOUT_SECONDS="3",
        BULKOPS_WEBHOOK_POLL_SECONDS="0.1",
    )


async def test_a_delivery_cut_off_by_a_sigkilled_worker_is_sent_again_with_its_id(
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    await make_products(owner, storage, tenant, 2, with_images=False)
    arrived = asyncio.Event()
    release = asyncio.Event()
    answered = 0

    async def slow_then_ok(request: Request) -> Response:
        nonlocal answered
        arrived.set()
        if answered == 0:
            # The first attempt hangs until its worker is dead.
            await release.wait()
        answered += 1
        return JSONResponse({"ok": True})

    async with provider_server() as receiver:
        receiver.answer(slow_then_ok)
        created = (await gql(CREATE, {"url": receiver.url("/hook")}))["createWebhookEndpoint"]
        queued = await gql(
            SET_STATUS,
            {"selection": {"filter": {}}, "status": "ACTIVE", "options": {"mode": "BACKGROUND"}},
        )
        assert queued["setProductStatus"]["__typename"] == "JobQueued"
        log = tmp_path / "workers.log"
        first = start_worker(settings, log)
        try:
            await asyncio.wait_for(arrived.wait(), timeout=30)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        release.set()
        second = start_worker(settings, log)
        try:
            deadline = time.monotonic() + 30
            while True:
                row = await owner.fetchrow(
                    "SELECT status, attempts, event_id FROM webhook_deliveries"
                    " WHERE endpoint_id = $1",
                    created["endpoint"]["id"],
                )
                if row is not None and row["status"] == "DELIVERED":
                    break
                assert time.monotonic() < deadline, (row, log.read_text()[-2000:])
                await asyncio.sleep(0.1)
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=20)
            except subprocess.TimeoutExpired:
                second.kill()
    assert row["attempts"] == 2
    assert len(receiver.seen) == 2
    assert {s.headers["webhook-id"] for s in receiver.seen} == {row["event_id"]}
    for seen in receiver.seen:
        assert Webhook(created["secret"]).verify(seen.body, seen.headers)["type"] == "job.queued"
