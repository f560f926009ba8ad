"""The clients the workloads talk to the API with: GraphQL over HTTP (httpx) and the `job`
subscription over a websocket (graphql-transport-ws), with the times a client sees."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from websockets.typing import Subprotocol

from bench.catalog import BenchError
from bench.stack import Stack
from bulkops.domain import TERMINAL_STATUSES

JOB_FIELDS = "status version total processed succeeded skipped failed"
WATCH = f"subscription($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} }} }}"


async def graphql(
    client: httpx.AsyncClient,
    token: str,
    query: str,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `data` of a GraphQL request; BenchError on any error."""
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise BenchError(f"GraphQL request failed ({response.status_code}): {body}")
    data: dict[str, Any] = body["data"]
    return data


def queued_job(data: dict[str, Any], field: str) -> str:
    """The job id of a mutation answered with JobQueued."""
    result = data[field]
    if result.get("__typename") != "JobQueued":
        raise BenchError(f"{field} did not queue a job: {result}")
    return str(result["job"]["id"])


@dataclass(frozen=True)
class Seen:
    """One state a subscriber received: wall-clock and monotonic receive times."""

    wall: float
    mono: float
    state: dict[str, Any]


async def open_subscription(ws_url: str, token: str, job_id: str) -> Any:
    """A websocket with the `job` subscription started (graphql-transport-ws)."""
    ws = await websockets.connect(
        ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], max_queue=None
    )
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    ack = json.loads(await ws.recv())
    if ack.get("type") != "connection_ack":
        await ws.close()
        raise BenchError(f"the websocket was refused: {ack}")
    payload = {"query": WATCH, "variables": {"id": job_id}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return ws


async def read_until_terminal(ws: Any) -> list[Seen]:
    """Every state the subscription delivers, up to and including the terminal one."""
    seen: list[Seen] = []
    async for raw in ws:
        wall, mono = time.time(), time.perf_counter()
        message: dict[str, Any] = json.loads(raw)
        if message.get("type") != "next":
            raise BenchError(f"the subscription ended early: {message}")
        if message["payload"].get("errors"):
            raise BenchError(f"the subscription failed: {message['payload']['errors']}")
        state: dict[str, Any] = message["payload"]["data"]["job"]
        seen.append(Seen(wall, mono, state))
        if state["status"] in TERMINAL_STATUSES:
            return seen
    raise BenchError("the websocket closed before the job ended")


async def watch_job(ws_url: str, token: str, job_id: str, *, timeout: float) -> list[Seen]:
    ws = await open_subscription(ws_url, token, job_id)
    try:
        return await asyncio.wait_for(read_until_terminal(ws), timeout)
    finally:
        await ws.close()


@dataclass(frozen=True)
class TimedJob:
    """A background job as its client sees it: `started` (perf_counter) is when the
    mutation was sent; `seconds` runs to the terminal state seen on the subscription."""

    job_id: str
    started: float
    mutation_s: float
    seconds: float
    seen: list[Seen]

    @property
    def final(self) -> dict[str, Any]:
        return self.seen[-1].state


async def timed_job(
    stack: Stack,
    token: str,
    send: Callable[[httpx.AsyncClient], Awaitable[str]],
    *,
    timeout: float,
) -> TimedJob:
    """Send a mutation that queues a job (`send` returns the job id), then follow the job
    on a `job` subscription until its terminal state."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=600) as client:
        await client.get("/healthz")  # an open keep-alive connection, as a client has
        started = time.perf_counter()
        job_id = await send(client)
        mutation_s = time.perf_counter() - started
        seen = await watch_job(stack.ws_url, token, job_id, timeout=timeout)
    return TimedJob(job_id, started, mutation_s, seen[-1].mono - started, seen)


def mutation_sender(
    token: str, query: str, variables: dict[str, Any], field: str
) -> Callable[[httpx.AsyncClient], Awaitable[str]]:
    async def send(client: httpx.AsyncClient) -> str:
        return queued_job(await graphql(client, token, query, variables), field)

    return send
