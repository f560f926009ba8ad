"""`bulkops watch JOB_ID`: a job's progress bar, live from the `job` subscription, and an
exit code that says how the job ended."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)

from bulkops.commands.client import (
    TOKEN_REFUSED,
    CommandError,
    ExitCode,
    add_target_options,
    api_target,
    unreachable,
)
from bulkops.commands.output import console
from bulkops.config import Settings
from bulkops.domain import JobStatus

OUTCOMES = {
    JobStatus.SUCCEEDED: ExitCode.OK,
    JobStatus.PARTIAL: ExitCode.JOB_PARTIAL,
    JobStatus.FAILED: ExitCode.JOB_FAILED,
    JobStatus.CANCELLED: ExitCode.JOB_CANCELLED,
}

# The pauses of `watch` when the API gives no Retry-After: doubling up to this.
WATCH_MAX_PAUSE = 60.0

SUBSCRIPTION = """subscription($id: ID!) { job(id: $id) {
  status processed total failed itemsPerSecond etaSeconds } }"""


class _TooManyRequests(Exception):
    """The API refused for now: HTTP 429 (with its Retry-After, if any) or close code 4429."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


async def watch(
    url: str,
    token: str,
    job_id: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Show a live progress bar for a job (on stderr) until it ends, then print its final
    status on stdout; the exit code is the job's outcome (`OUTCOMES`). Over the tenant's
    rate limit, wait (the API's Retry-After, else a doubling pause) and subscribe again:
    the subscription starts with the job's current state, so nothing is missed. Raises
    `CommandError` for a refused token, an unknown job or an unreachable API."""
    pause = 1.0
    while True:
        try:
            return await _watch_once(url, token, job_id)
        except _TooManyRequests as exc:
            wait = exc.retry_after if exc.retry_after is not None else pause
            print(f"bulkops watch: too many requests, again in {wait:.0f} s", file=sys.stderr)
            await sleep(wait)
            pause = min(pause * 2, WATCH_MAX_PAUSE)


async def _watch_once(url: str, token: str, job_id: str) -> int:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    try:
        return await _follow(url, token, job_id)
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status == 429:
            retry_after = exc.response.headers.get("Retry-After", "")
            raise _TooManyRequests(int(retry_after) if retry_after.isdigit() else None) from exc
        if status in (401, 403):
            raise CommandError(TOKEN_REFUSED, ExitCode.TOKEN_REFUSED) from None
        raise CommandError(f"the API refused the websocket: HTTP {status}") from None
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        if code == 4429:
            raise _TooManyRequests(None) from exc
        if code == 4403:
            raise CommandError(TOKEN_REFUSED, ExitCode.TOKEN_REFUSED) from None
        raise CommandError(f"the API closed the connection (code {code})") from None
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise unreachable(url, exc) from None


async def _follow(url: str, token: str, job_id: str) -> int:
    import websockets
    from websockets.typing import Subprotocol

    ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/graphql"
    async with websockets.connect(
        ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10
    ) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        if json.loads(await ws.recv()).get("type") != "connection_ack":
            raise CommandError(TOKEN_REFUSED, ExitCode.TOKEN_REFUSED)
        payload = {"query": SUBSCRIPTION, "variables": {"id": job_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        status: str | None = None
        # Started with the first state, so that a refusal is one line without a bar.
        bar: _Bar | None = None
        try:
            async for raw in ws:
                message: dict[str, Any] = json.loads(raw)
                if message["type"] == "next":
                    _refuse_errors(message["payload"].get("errors"), job_id)
                    job = message["payload"]["data"]["job"]
                    status = job["status"]
                    bar = bar or _Bar()
                    bar.show(job)
                elif message["type"] == "error":
                    _refuse_errors(message["payload"], job_id)
                elif message["type"] == "complete":
                    break
        finally:
            if bar is not None:
                bar.stop()
    if status is None or status not in OUTCOMES:
        raise CommandError(f"the API stopped sending job {job_id} before it ended")
    print(status)
    return OUTCOMES[JobStatus(status)]


class _Bar:
    """The job's progress bar on stderr: its status, done of total, rate, eta, failures."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.fields[status]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console(stderr=True),
        )
        self._task: TaskID = self._progress.add_task("", total=None, status="", detail="")
        self._progress.start()

    def show(self, job: dict[str, Any]) -> None:
        detail = [f"{job['failed']:,} failed"] if job["failed"] else []
        if job["itemsPerSecond"]:
            detail.append(f"{job['itemsPerSecond']:,.0f}/s")
        if job["etaSeconds"]:
            detail.append(f"eta {job['etaSeconds']:.0f}s")
        self._progress.update(
            self._task,
            completed=job["processed"],
            total=job["total"] or None,
            status=job["status"],
            detail="  ".join(detail),
        )

    def stop(self) -> None:
        self._progress.stop()


def _refuse_errors(errors: list[dict[str, Any]] | None, job_id: str) -> None:
    if not errors:
        return
    code = (errors[0].get("extensions") or {}).get("code")
    if code == "NOT_FOUND":
        raise CommandError(f"no job {job_id}")
    if code in ("UNAUTHENTICATED", "FORBIDDEN"):
        raise CommandError(TOKEN_REFUSED, ExitCode.TOKEN_REFUSED)
    raise CommandError(str(errors[0].get("message")))


def run_watch(args: argparse.Namespace, settings: Settings) -> int:
    url, token = api_target(settings, args.url, args.token)
    return asyncio.run(watch(url, token, args.job_id))


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "watch",
        help="a live progress bar for a job; the exit code says how it ended",
        description="Follow a job until it ends, then print its status. Exit codes: 0 "
        "SUCCEEDED, 10 PARTIAL, 11 FAILED, 12 CANCELLED; 1 unknown job, 3 token refused, "
        "4 API unreachable.",
    )
    p.add_argument("job_id", metavar="JOB_ID", help="the job's id")
    add_target_options(p)
    p.set_defaults(handler=run_watch)
