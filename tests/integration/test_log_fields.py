"""The fields an operator follows in the logs, on the lines the real worker and the real API
write: a job's `job_id`, `tenant_id` and `operation`; a request's `request_id`."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from bulkops import logs
from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.queries import DELETE
from tests.support import GraphQLClient, Tenant, make_products, run_worker


@pytest.fixture
def output(settings: Settings) -> Iterator[io.StringIO]:
    """JSON lines from the moment the test starts; the logging setup is restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    stream = io.StringIO()
    logs.configure_logging(settings.model_copy(update={"dev": False}), stream=stream)
    yield stream
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def lines(output: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


async def test_a_jobs_lines_name_the_job_its_tenant_and_operation(
    output: io.StringIO,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    ids = await make_products(owner, storage, tenant, 3, with_images=False)
    data = await gql(DELETE, {"selection": {"ids": ids}, "options": {"mode": "BACKGROUND"}})
    job_id = data["deleteProducts"]["job"]["id"]
    await run_worker(settings)

    mine = [line for line in lines(output) if line.get("job_id") == job_id]
    queued, ended = mine[0], mine[-1]
    assert queued["message"].startswith("job queued")
    assert "request_id" in queued
    assert ended["message"] == "slice ended: SUCCEEDED"
    assert ended["logger"] == "bulkops.tasks.worker"
    for line in (queued, ended):
        assert line["tenant_id"] == tenant.id
        assert line["operation"] == "deleteProducts"
    # arq's own line per job (with its `delayed=` head start) is not among them, and the
    # reconciler, which ran at the worker's start and found nothing lost, kept quiet.
    assert not [line for line in lines(output) if "delayed=" in line["message"]]
    assert not [line for line in lines(output) if line["logger"].startswith("arq")]
    assert not [line for line in lines(output) if "housekeeping" in line["logger"]]


async def test_a_requests_lines_carry_the_id_it_answers_with(
    output: io.StringIO, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await http.post(
        "/graphql",
        json={"query": "{ products { nope } }"},
        headers={"Authorization": f"Bearer {tenant.token}", "X-Request-ID": "trace-42"},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "trace-42"
    [line] = [line for line in lines(output) if line["logger"] == "bulkops.graphql"]
    assert line["level"] == "info"
    assert line["request_id"] == "trace-42"
