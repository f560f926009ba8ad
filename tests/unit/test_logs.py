"""Log lines as an operator reads them: JSON in production with the job's or the request's
fields on every line, readable text in dev, arq's per-job lines quiet."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bulkops import logs
from bulkops.config import Settings
from bulkops.web.request_id import RequestId

JOB = {"job_id": "0b7d3c4e-1f2a-4b5c-8d9e-0f1a2b3c4d5e", "tenant_id": "7", "operation": "x"}


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """Where `configure_logging` writes in these tests; the logging setup is restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    yield io.StringIO()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def lines(output: io.StringIO, logger: str | None = None) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in output.getvalue().splitlines()]
    return [line for line in parsed if logger is None or line["logger"] == logger]


def test_a_jobs_lines_carry_the_job_as_json_fields(output: io.StringIO) -> None:
    logs.configure_logging(Settings(dev=False), stream=output)
    with logs.bound(**JOB):
        logging.getLogger("bulkops.tasks.worker").info("slice ended: %s", "SLICED")
    logging.getLogger("bulkops.other").warning("outside any job")

    inside, outside = lines(output)
    assert inside["message"] == "slice ended: SLICED"
    assert inside["level"] == "info"
    assert inside["logger"] == "bulkops.tasks.worker"
    assert {key: inside[key] for key in JOB} == JOB
    assert inside["time"].endswith("Z")
    assert "job_id" not in outside
    assert logs.current() == {}


def test_a_failures_traceback_stays_on_its_json_line(output: io.StringIO) -> None:
    logs.configure_logging(Settings(dev=False), stream=output)
    with logs.bound(**JOB):
        try:
            raise RuntimeError("the batch broke")
        except RuntimeError:
            logging.getLogger("bulkops.tasks.worker").exception("job failed")
    [line] = lines(output)
    assert line["job_id"] == JOB["job_id"]
    assert "RuntimeError: the batch broke" in line["exc"]


def test_dev_mode_writes_readable_lines(output: io.StringIO) -> None:
    logs.configure_logging(Settings(dev=True), stream=output)
    with logs.bound(**JOB):
        logging.getLogger("bulkops.tasks.worker").info("slice ended: %s", "SUCCEEDED")
    [line] = output.getvalue().splitlines()
    assert not line.startswith("{")
    assert " INFO  bulkops.tasks.worker  slice ended: SUCCEEDED  " in line
    assert f"job_id={JOB['job_id']} tenant_id=7 operation=x" in line


def test_log_format_overrides_dev_mode(output: io.StringIO) -> None:
    logs.configure_logging(Settings(dev=True, log_format="json"), stream=output)
    logging.getLogger("bulkops").info("hello")
    assert lines(output)[0]["message"] == "hello"


def test_arqs_per_job_lines_are_quiet_but_its_failures_are_not(output: io.StringIO) -> None:
    logs.configure_logging(Settings(dev=False), stream=output)
    arq = logging.getLogger("arq.worker")
    arq.info("  0.01s → run_job(...) delayed=3600.04s")
    arq.warning("job expired")
    assert [line["message"] for line in lines(output)] == ["job expired"]


def test_debug_level_brings_arqs_lines_back(output: io.StringIO) -> None:
    logs.configure_logging(Settings(dev=False, log_level="debug"), stream=output)
    logging.getLogger("arq.worker").info("  0.01s → run_job(...)")
    assert len(lines(output)) == 1


async def _endpoint(request: Request) -> PlainTextResponse:
    logging.getLogger("bulkops.web").info("answering")
    return PlainTextResponse("ok")


@pytest.fixture
def app() -> Starlette:
    return Starlette(routes=[Route("/", _endpoint)], middleware=[Middleware(RequestId)])


async def get(app: Starlette, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/", headers=headers or {})


async def test_a_requests_lines_carry_its_request_id(output: io.StringIO, app: Starlette) -> None:
    logs.configure_logging(Settings(dev=False), stream=output)
    first = await get(app)
    second = await get(app)
    ids = [line["request_id"] for line in lines(output, "bulkops.web")]
    assert ids == [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert len(set(ids)) == 2
    assert len(ids[0]) == 32


async def test_a_sane_incoming_request_id_is_kept(output: io.StringIO, app: Starlette) -> None:
    logs.configure_logging(Settings(dev=False), stream=output)
    response = await get(app, {"X-Request-ID": "edge-7f3a:42"})
    assert response.headers["X-Request-ID"] == "edge-7f3a:42"
    assert lines(output, "bulkops.web")[0]["request_id"] == "edge-7f3a:42"


@pytest.mark.parametrize("given", ["", "a b", "x" * 200, '"}{"level":"error', "-leading"])
async def test_an_odd_incoming_request_id_is_replaced(
    output: io.StringIO, app: Starlette, given: str
) -> None:
    logs.configure_logging(Settings(dev=False), stream=output)
    response = await get(app, {"X-Request-ID": given})
    answered = response.headers["X-Request-ID"]
    assert answered != given
    assert lines(output, "bulkops.web")[0]["request_id"] == answered


def test_uvicorns_coloured_copy_of_a_message_is_left_out(output: io.StringIO) -> None:
    logs.configure_logging(Settings(dev=True), stream=output)
    # As uvicorn logs it (its own loggers' levels depend on what else ran in the process).
    logging.getLogger("bulkops.test").info(
        "Started server process [%d]", 7, extra={"color_message": "Started [\x1b[36m%d\x1b[0m]"}
    )
    assert output.getvalue().rstrip().endswith("bulkops.test  Started server process [7]")
