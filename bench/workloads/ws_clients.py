"""W8's client process: many `job` subscriptions to one job from one process.

Prints `ready` once every subscriber has its first state, then writes, when every
subscription has ended, a JSON file: per subscriber the states it received as
[wall-clock receive time, version, status].

Run by W8: python -m bench.workloads.ws_clients URL TOKEN JOB_ID COUNT OUT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.clients import open_subscription
from bench.stack import raise_open_files_limit
from bulkops.domain import TERMINAL_STATUSES

CONNECTING = 50
TIMEOUT = 900.0


async def subscribe(
    url: str, token: str, job_id: str, gate: asyncio.Semaphore, first: asyncio.Queue[None]
) -> list[list[Any]]:
    async with gate:
        ws = await open_subscription(url, token, job_id)
    seen: list[list[Any]] = []
    try:
        async for raw in ws:
            wall = time.time()
            message: dict[str, Any] = json.loads(raw)
            if message.get("type") != "next" or message["payload"].get("errors"):
                raise RuntimeError(f"the subscription ended early: {message}")
            state = message["payload"]["data"]["job"]
            seen.append([wall, state["version"], state["status"]])
            if len(seen) == 1:
                first.put_nowait(None)
            if state["status"] in TERMINAL_STATUSES:
                break
    finally:
        await ws.close()
    return seen


async def run(url: str, token: str, job_id: str, count: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(CONNECTING)
    first: asyncio.Queue[None] = asyncio.Queue()
    started = time.perf_counter()
    tasks = [asyncio.create_task(subscribe(url, token, job_id, gate, first)) for _ in range(count)]

    async def announce() -> None:
        for _ in range(count):
            await first.get()
        print(f"ready {time.perf_counter() - started:.3f}", flush=True)

    announcer = asyncio.create_task(announce())
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    announcer.cancel()
    return {
        "subscribers": [d for d in done if isinstance(d, list)],
        "errors": [repr(d) for d in done if not isinstance(d, list)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("job_id")
    parser.add_argument("count", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    raise_open_files_limit()
    result = asyncio.run(run(args.url, args.token, args.job_id, args.count))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
