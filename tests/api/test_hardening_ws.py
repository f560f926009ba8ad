"""Bad input on the /graphql websocket gets the protocol's answer (a close code, or an
`error` for one operation), never a dropped connection, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from bulkops.graphql.limits import UNSTORABLE_MESSAGE
from tests.support import Subscription, Tenant

TRANSPORT = Subprotocol("graphql-transport-ws")
LEGACY = Subprotocol("graphql-ws")
OPERATIONS = "query { operations { name } }"
JOB = "subscription($id: ID!) { job(id: $id) { status } }"
JOBS = "subscription { jobs { id } }"
# The server's own failures, as opposed to GraphQL errors answered to the client.
SERVER_LOGGERS = ("uvicorn.error", "strawberry.ws.task", "asyncio")


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Errors the in-process server logs (uvicorn's loggers do not propagate)."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    caplog.set_level(logging.ERROR)
    errors: list[logging.LogRecord] = []
    try:
        yield errors
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    errors.extend(r for r in caplog.records if r.name in SERVER_LOGGERS)
    assert errors == [], [r.getMessage() for r in errors]


def init(token: str) -> str:
    return json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})


async def connect(ws_url: str, protocol: Subprotocol, token: str) -> Any:
    ws = await websockets.connect(ws_url, subprotocols=[protocol])
    await ws.send(init(token))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ack["type"] == "connection_ack", ack
    return ws


async def close_of(ws: Any) -> tuple[int, str, list[Any]]:
    """The close code and reason the server sent, and the messages before them."""
    messages: list[Any] = []

    async def read() -> None:
        while True:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))

    with pytest.raises(websockets.ConnectionClosed) as closed:
        await read()
    assert closed.value.rcvd is not None, "no close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason, messages


async def quiet(ws: Any) -> None:
    """Nothing more arrives for a moment."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.3)


async def assert_serving(ws_url: str, tenant: Tenant) -> None:
    """A new connection is accepted and answers a query."""
    sub = Subscription(ws_url, tenant.token)
    await sub.connect()
    await sub.start(OPERATIONS, {})
    messages = await sub.messages()
    await sub.close()
    assert [m["type"] for m in messages] == ["next", "complete"], messages
    assert messages[0]["payload"]["data"]["operations"]


def subscribe(payload: Any, sub_id: Any = "1") -> str:
    return json.dumps({"type": "subscribe", "id": sub_id, "payload": payload})


@pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
async def test_a_missing_or_bad_token_closes_with_4403(
    ws_url: str, tenant: Tenant, protocol: Subprotocol, server_errors: list[logging.LogRecord]
) -> None:
    inits: list[dict[str, Any]] = [
        {"type": "connection_init", "payload": {"authorization": "Bearer wrong"}},
        {"type": "connection_init", "payload": {"Authorization": f"Basic {tenant.token}"}},
        {"type": "connection_init", "payload": {"authorization": ["Bearer", tenant.token]}},
        {"type": "connection_init", "payload": {}},
        {"type": "connection_init", "payload": None},
        {"type": "connection_init"},
    ]
    for message in inits:
        async with websockets.connect(ws_url, subprotocols=[protocol]) as ws:
            await ws.send(json.dumps(message))
            code, reason, before = await close_of(ws)
        assert (code, reason) == (4403, "Forbidden"), message
        if protocol == LEGACY:
            assert [m["type"] for m in before] == ["connection_error"]
            assert before[0]["payload"]["message"] == "A valid bearer token is required."
        else:
            assert before == []
    ws = await connect(ws_url, protocol, tenant.token)
    await ws.close()
    await assert_serving(ws_url, tenant)


MALFORMED: list[str | bytes] = [
    "5",
    "[]",
    "null",
    '"subscribe"',
    "{}",
    '{"type": 5}',
    "not json",
    "[" * 100_000,
    b"\x00\x01binary",
    subscribe("{ operations { name } }"),
    subscribe({"query": "{ operations { name } }"}, {"an": "object"}),
    subscribe({"query": "{ operations { name } }"}, ""),
    subscribe({"query": "{ operations { name } }"}, 7),
    subscribe({"query": 5}),
    subscribe({"query": OPERATIONS, "variables": [1]}),
    subscribe({"query": OPERATIONS, "operationName": {"a": 1}}),
    subscribe({"query": OPERATIONS, "extensions": "x"}),
    json.dumps({"type": "subscribe", "id": "1"}),
    json.dumps({"type": "complete", "id": {"an": "object"}}),
    json.dumps({"type": "complete"}),
    json.dumps({"type": "ping", "payload": 5}),
    json.dumps({"type": "pong", "payload": [1]}),
    json.dumps({"type": "next", "id": "1", "payload": {}}),
]


async def test_malformed_messages_close_graphql_transport_ws_with_4400(
    ws_url: str, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    for frame in MALFORMED:
        ws = await connect(ws_url, TRANSPORT, tenant.token)
        await ws.send(frame)
        code, reason, before = await close_of(ws)
        assert code == 4400, (frame[:80], code, reason)
        assert reason, frame[:80]
        assert before == [], frame[:80]
    await assert_serving(ws_url, tenant)


async def test_a_malformed_connection_init_closes_with_4400(
    ws_url: str, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    for payload in ("Bearer x", [tenant.token], 5):
        async with websockets.connect(ws_url, subprotocols=[TRANSPORT]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            code, reason, _ = await close_of(ws)
        assert (code, reason) == (4400, "Invalid message received"), payload
    await assert_serving(ws_url, tenant)


async def test_close_reasons_are_cut_to_fit_a_close_frame(
    ws_url: str, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    cases: list[tuple[str, int, str]] = [
        # A syntax error quotes the token it stopped at.
        (subscribe({"query": "x" * 500}), 4400, "Syntax Error: Unexpected Name 'xxx"),
        (
            subscribe({"query": JOBS, "operationName": "é" * 200}),
            4400,
            'Unknown operation named "é',
        ),
        (json.dumps({"type": "t" * 500}), 4400, "Unknown message type: ttt"),
    ]
    for frame, expected_code, start in cases:
        ws = await connect(ws_url, TRANSPORT, tenant.token)
        await ws.send(frame)
        code, reason, _ = await close_of(ws)
        assert code == expected_code
        assert reason.startswith(start), reason
        assert reason.endswith("…")
        assert len(reason.encode()) <= 123
    await assert_serving(ws_url, tenant)


async def test_a_second_subscribe_with_a_running_id_closes_with_4409(
    ws_url: str, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    for sub_id in ("dup", "d" * 300 + "\ud800"):
        ws = await connect(ws_url, TRANSPORT, tenant.token)
        for _ in range(3):
            await ws.send(subscribe({"query": JOBS}, sub_id))
        code, reason, before = await close_of(ws)
        assert code == 4409
        assert reason.startswith("Subscriber for ddd" if len(sub_id) > 3 else "Subscriber for dup")
        assert len(reason.encode()) <= 123
        assert before == []
    await assert_serving(ws_url, tenant)


async def test_protocol_order_is_enforced_with_its_close_codes(
    ws_url: str, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT]) as ws:
        await ws.send(subscribe({"query": OPERATIONS}))
        assert (await close_of(ws))[:2] == (4401, "Unauthorized")
    ws = await connect(ws_url, TRANSPORT, tenant.token)
    await ws.send(init(tenant.token))
    assert (await close_of(ws))[:2] == (4429, "Too many initialisation requests")
    await assert_serving(ws_url, tenant)


async def test_bad_operations_get_an_error_and_the_connection_serves_on(
    ws_url: str, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    ws = await connect(ws_url, TRANSPORT, tenant.token)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"query": JOB, "variables": {"id": {"an": "object"}}}, "Variable '$id' has invalid"),
        (
            {"query": JOB, "variables": {}},
            "Variable '$id' has invalid value: Expected a value of non-null",
        ),
        ({"query": JOB}, "Variable '$id' has invalid value: Expected a value of non-null"),
        ({"query": JOB, "variables": {"id": "not-a-uuid"}}, "No job not-a-uuid."),
        ({"query": "subscription { nothing }"}, "Cannot query field 'nothing'"),
    ]
    # Variables nested nearly as deep as the server's JSON decoder allows (written out by
    # hand: encoding them here would hit the recursion limit); a shared subscription
    # encodes its variables again.
    nested = '{"a":' * 900 + "1" + "}" * 900
    bad.append(({"query": JOB, "variables": {"id": "NESTED"}}, "Variables may nest"))
    # What Postgres cannot store is refused before anything runs, as over HTTP.
    bad.append(({"query": JOB, "variables": {"id": "a\u0000b"}}, UNSTORABLE_MESSAGE))
    for n, (payload, message) in enumerate(bad):
        await ws.send(subscribe(payload, f"bad-{n}").replace('"NESTED"', nested))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer["id"] == f"bad-{n}", answer
        errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
        assert errors[0]["message"].startswith(message), errors
        if answer["type"] == "next":
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {
                "id": f"bad-{n}",
                "type": "complete",
            }
    # A complete for an id that runs nothing is ignored; pings get a pong, pongs nothing.
    await ws.send(json.dumps({"type": "complete", "id": "never-started"}))
    await ws.send(json.dumps({"type": "pong", "payload": {"latency": 3}}))
    await ws.send(json.dumps({"type": "pong"}))
    await quiet(ws)
    for ping in (
        {"type": "ping"},
        {"type": "ping", "payload": None},
        {"type": "ping", "payload": {}},
    ):
        await ws.send(json.dumps(ping))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
    # An id is free again once its operation is over.
    for _ in range(2):
        await ws.send(subscribe({"query": OPERATIONS}, "bad-0"))
        answers = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
        assert [a["type"] for a in answers] == ["next", "complete"]
    await ws.close()
    await assert_serving(ws_url, tenant)


async def test_legacy_protocol_answers_unreadable_messages_and_reads_on(
    ws_url: str, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    ws = await connect(ws_url, LEGACY, tenant.token)
    unreadable: list[str | bytes] = [
        "5",
        "[]",
        "null",
        "{}",
        "not json",
        "[" * 100_000,
        b"\x00\x01binary",
        json.dumps({"type": "start", "id": {"an": "object"}, "payload": {"query": JOBS}}),
        json.dumps({"type": "start", "payload": {"query": JOBS}}),
        json.dumps({"type": "stop", "id": 5}),
        json.dumps({"type": "bogus", "id": "1"}),
        init(tenant.token),
    ]
    for frame in unreadable:
        await ws.send(frame)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer["type"] == "connection_error", (frame[:80], answer)
        assert answer["payload"]["message"], answer
    not_a_request: list[Any] = [None, "x", [], {}, {"query": 5}, {"query": JOBS, "variables": 5}]
    for n, payload in enumerate(not_a_request):
        message: dict[str, Any] = {"type": "start", "id": f"s{n}", "payload": payload}
        if payload is None:
            del message["payload"]
        await ws.send(json.dumps(message))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer == {
            "type": "error",
            "id": f"s{n}",
            "payload": {"message": "The payload must be a GraphQL request."},
        }
    # A stop for an id that runs nothing is ignored.
    await ws.send(json.dumps({"type": "stop", "id": "never-started"}))
    await quiet(ws)
    # The same connection still runs subscriptions.
    start = {"query": JOB, "variables": {"id": "not-a-uuid"}}
    await ws.send(json.dumps({"type": "start", "id": "ok", "payload": start}))
    data = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert data["type"] == "data"
    assert data["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "complete", "id": "ok"}
    await ws.send(json.dumps({"type": "connection_terminate"}))
    assert (await close_of(ws))[0] == 1000
    await assert_serving(ws_url, tenant)


async def test_json_the_decoder_cannot_read_is_a_client_error_over_http_too(
    http: httpx.AsyncClient, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    headers = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/json"}
    for body in (b"[" * 100_000, b'{"query": "\xff{ operations { name } }"}'):
        response = await http.post("/graphql", content=body, headers=headers)
        assert response.status_code == 400, body[:40]


async def test_operations_answering_as_the_socket_closes_end_quietly(
    ws_url: str, tenant: Tenant, server_errors: list[logging.LogRecord]
) -> None:
    for _ in range(5):
        ws = await connect(ws_url, TRANSPORT, tenant.token)
        # The syntax error closes the socket from its operation's task, while the reader
        # still starts the queries behind it.
        await ws.send(subscribe({"query": "{"}, "broken"))
        for n in range(40):
            await ws.send(subscribe({"query": OPERATIONS}, f"q{n}"))
        code, _, _ = await close_of(ws)
        assert code == 4400
    for _ in range(5):
        ws = await connect(ws_url, LEGACY, tenant.token)
        for n in range(40):
            await ws.send(json.dumps({"type": "start", "id": f"s{n}", "payload": {"query": JOBS}}))
        await ws.close()
    await assert_serving(ws_url, tenant)
