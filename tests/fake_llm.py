"""A fake AI provider for the tests and benchmarks: a real OpenAI-compatible Chat
Completions server (`POST /v1/chat/completions`) on a loopback port.

It answers "Description of <prompt>" with a `usage` block, enforces its own rate limit
(requests per second over a sliding one-second window: 429 with Retry-After past it), and
can be told to fail a share of calls (500/503), to answer a share of them slower than a
client's timeout, to answer garbage (not JSON, no choices, empty content), or to be down
(503 for everything; `stop()` refuses connections). Every request is recorded: when, its
Idempotency-Key, its model and what was answered.

In a test, start it inside the test's event loop (`async with FakeLLM() as llm:`, or
`await llm.start()`), and point `llm_base_url` at `llm.base_url`. Standalone, for the
benchmarks: `python -m tests.fake_llm --port 8600 --rps 50 --latency-ms 200`; then
`GET /stats` gives the counts and `POST /control` (a JSON object of the knobs below)
changes the behaviour."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.serving import QuickServer

Garbage = Literal["not_json", "no_choices", "empty_content", "not_object"]
ANSWER_PREFIX = "Description of "


@dataclass(frozen=True)
class Call:
    """One request as the fake saw it."""

    # When it arrived (time.monotonic()).
    at: float
    idempotency_key: str | None
    model: str | None
    prompt: str | None
    status: int
    # "answer", "rate_limited", "failed", "slow", "garbage", "down", "unauthorized", "bad_request"
    outcome: str
    # Whether it was counted against the rate limit (let through, whatever came of it).
    admitted: bool = False


def _share_hits(n: int, share: float) -> bool:
    """Whether the n-th call (from 0) is among a `share` of calls spread evenly:
    deterministic, so a test run is the same every time."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    return math.floor((n + 1) * share) > math.floor(n * share)


class FakeLLM:
    """The fake provider. Its knobs can be changed while it runs:

    - `rps`: requests per second it accepts (None: any), over a sliding one-second window;
    - `latency`: seconds each answer takes;
    - `fail_share`: a share of calls answered `fail_status` (500 by default; 503 also);
    - `slow_share` and `slow_seconds`: a share of calls answered only after that long;
    - `garbage`: answer with garbage of that kind (None: proper answers): every call, or
      with `garbage_marker` set, the calls whose prompt holds that text;
    - `down`: answer 503 to everything;
    - `usage`: (prompt_tokens, completion_tokens) reported for every answer (None: about
      four characters a token of the prompt and the answer);
    - `api_key`: the bearer token it wants (None: any, or none);
    - `retry_after`: what a 429 says (seconds; None: until the window has room)."""

    def __init__(
        self,
        *,
        rps: float | None = None,
        latency: float = 0.0,
        port: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.rps = rps
        self.latency = latency
        self.fail_share = 0.0
        self.fail_status = 500
        self.slow_share = 0.0
        self.slow_seconds = 30.0
        self.garbage: Garbage | None = None
        self.garbage_marker: str | None = None
        self.down = False
        self.usage: tuple[int, int] | None = None
        self.api_key: str | None = None
        self.retry_after: float | None = None
        self.calls: list[Call] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.host = host
        self.port = port if port is not None else _free_port()
        self._accepted: collections.deque[float] = collections.deque()
        self._requests = 0
        self._server: QuickServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/stats", self._stats, methods=["GET"]),
                Route("/control", self._control, methods=["POST"]),
            ]
        )

    @property
    def base_url(self) -> str:
        """What BULKOPS_LLM_BASE_URL is set to."""
        return f"http://{self.host}:{self.port}/v1"

    def _record(
        self,
        request: Request,
        body: Any,
        status: int,
        outcome: str,
        *,
        at: float,
        admitted: bool = True,
    ) -> None:
        model = None
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            model = body["model"]
        prompt = _prompt(body)
        key = request.headers.get("idempotency-key")
        self.calls.append(Call(at, key, model, prompt, status, outcome, admitted))

    def _over_rate(self, now: float) -> float | None:
        """None when the call may go, else the seconds until the window has room."""
        if self.rps is None:
            return None
        window = self._accepted
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) < self.rps:
            window.append(now)
            return None
        return max(window[0] + 1.0 - now, 0.001)

    async def _completions(self, request: Request) -> Response:
        raw = await request.body()
        # No await from here to the rate limit's check: the window sees calls in order.
        arrived = time.monotonic()
        n = self._requests
        self._requests += 1
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        if self.down:
            self._record(request, body, 503, "down", at=arrived, admitted=False)
            return JSONResponse({"error": {"message": "down"}}, status_code=503)
        if self.api_key is not None and (
            request.headers.get("authorization") != f"Bearer {self.api_key}"
        ):
            self._record(request, body, 401, "unauthorized", at=arrived, admitted=False)
            return JSONResponse({"error": {"message": "Incorrect API key."}}, status_code=401)
        wait = self._over_rate(arrived)
        if wait is not None:
            self._record(request, body, 429, "rate_limited", at=arrived, admitted=False)
            after = self.retry_after if self.retry_after is not None else wait
            return JSONResponse(
                {"error": {"message": "Rate limit reached.", "type": "requests"}},
                status_code=429,
                headers={
                    "Retry-After": str(max(1, math.ceil(after))),
                    "retry-after-ms": str(max(1, round(after * 1000))),
                },
            )
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._record(request, body, 400, "bad_request", at=arrived)
            return JSONResponse({"error": {"message": "messages is required"}}, status_code=400)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if _share_hits(n, self.slow_share):
                await asyncio.sleep(self.slow_seconds)
                self._record(request, body, 200, "slow", at=arrived)
                return self._answer(body)
            if self.latency:
                await asyncio.sleep(self.latency)
            if _share_hits(n, self.fail_share):
                self._record(request, body, self.fail_status, "failed", at=arrived)
                return JSONResponse(
                    {"error": {"message": "The server had an error."}},
                    status_code=self.fail_status,
                )
            if self.garbage is not None and (
                self.garbage_marker is None or self.garbage_marker in (_prompt(body) or "")
            ):
                self._record(request, body, 200, "garbage", at=arrived)
                return self._garbage(self.garbage)
            self._record(request, body, 200, "answer", at=arrived)
            return self._answer(body)
        finally:
            self.in_flight -= 1

    def _answer(self, body: dict[str, Any]) -> Response:
        prompt = _prompt(body) or ""
        text = answer_for(prompt)
        if self.usage is not None:
            prompt_tokens, completion_tokens = self.usage
        else:
            prompt_tokens = max(1, len(prompt) // 4)
            completion_tokens = max(1, len(text) // 4)
        return JSONResponse(
            {
                "id": f"chatcmpl-{self._requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    @staticmethod
    def _garbage(kind: Garbage) -> Response:
        if kind == "not_json":
            return PlainTextResponse("<html>Bad gateway, but 200</html>")
        if kind == "not_object":
            return JSONResponse(["not", "an", "object"])
        usage = {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}
        if kind == "no_choices":
            return JSONResponse({"id": "x", "choices": [], "usage": usage})
        return JSONResponse(
            {
                "id": "x",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "  "}}],
                "usage": usage,
            }
        )

    # What the tests and benchmarks read.

    @property
    def answered(self) -> list[Call]:
        """The calls answered with a proper text in time (not garbage, not too slow)."""
        return [c for c in self.calls if c.outcome == "answer"]

    def per_second(self) -> dict[int, int]:
        """Calls let through by the rate limit in each second since the first one."""
        let_through = [c.at for c in self.calls if c.admitted]
        if not let_through:
            return {}
        start = let_through[0]
        return dict(collections.Counter(int(t - start) for t in let_through))

    def busiest_window(self) -> int:
        """The most calls let through by the rate limit in any one-second window (never
        more than `rps`)."""
        times = sorted(c.at for c in self.calls if c.admitted)
        best = lo = 0
        for hi, t in enumerate(times):
            while times[lo] <= t - 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def keys_seen(self) -> set[str]:
        return {c.idempotency_key for c in self.calls if c.idempotency_key is not None}

    def duplicates(self) -> dict[str, int]:
        """Keys answered properly more than once, with how many times."""
        counts = collections.Counter(c.idempotency_key for c in self.answered)
        return {k: n for k, n in counts.items() if k is not None and n > 1}

    def stats(self) -> dict[str, Any]:
        outcomes = collections.Counter(c.outcome for c in self.calls)
        return {
            "requests": len(self.calls),
            "outcomes": dict(outcomes),
            "per_second": self.per_second(),
            "busiest_window": self.busiest_window(),
            "keys_seen": len(self.keys_seen()),
            "duplicates": len(self.duplicates()),
            "without_key": sum(1 for c in self.calls if c.idempotency_key is None),
            "most_in_flight": self.most_in_flight,
            "models": sorted({c.model for c in self.calls if c.model}),
        }

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _control(self, request: Request) -> Response:
        knobs = await request.json()
        for name in (
            "rps",
            "latency",
            "fail_share",
            "fail_status",
            "slow_share",
            "slow_seconds",
            "garbage",
            "garbage_marker",
            "down",
            "api_key",
            "retry_after",
        ):
            if name in knobs:
                setattr(self, name, knobs[name])
        if knobs.get("reset"):
            self.calls.clear()
            self._accepted.clear()
            self.most_in_flight = 0
        return JSONResponse({"ok": True, "calls": [asdict(c) for c in self.calls[-5:]]})

    # Running it.

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan="off"
        )
        self._server = QuickServer(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop answering: connections are refused from now on."""
        if self._server is None or self._task is None:
            return
        self._server.stop()
        done, _ = await asyncio.wait({self._task}, timeout=2)
        if not done:
            # Slow answers still sleeping: drop them.
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None
        self._task = None

    async def __aenter__(self) -> FakeLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _prompt(body: Any) -> str | None:
    """The last message's text of a request body, if it has one."""
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = messages[-1].get("content")
        return content if isinstance(content, str) else None
    return None


def answer_for(prompt: str) -> str:
    """The fake's answer to a prompt."""
    return f"{ANSWER_PREFIX}{prompt.strip()}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--rps", type=float, default=None, help="requests per second accepted")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fail-share", type=float, default=0.0)
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--slow-share", type=float, default=0.0)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    args = parser.parse_args()
    fake = FakeLLM(rps=args.rps, latency=args.latency_ms / 1000, port=args.port, host=args.host)
    fake.fail_share, fake.fail_status = args.fail_share, args.fail_status
    fake.slow_share, fake.slow_seconds = args.slow_share, args.slow_seconds
    print(f"fake provider on {fake.base_url}", flush=True)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
