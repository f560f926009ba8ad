"""The README's and docs/api.md's examples, run in order against the demo catalog `make dev`
makes, as a newcomer pasting them would: each answer must have the shape the docs show.

An example to run is a fenced block whose info string says `run` (```graphql run, ```sh run);
the block after it, when its info string says `answer` (```json answer, ```text answer), is
what it answers. GraphQL goes over HTTP, a subscription over a websocket; shell blocks run in
bash with the real curl and jq, `$TOKEN` being the demo tenant's token and variables carried
from one shell block to the next. `<the job id>` (and a `$id` variable) is the job queued
last. A worker takes the queued jobs before each example, except that a subscription follows
its job live while the worker runs it; a subscription naming no job (`jobs`) stays open until
a job queued after it has ended, and its answer is the later block marked `last`.

Answers are compared by shape: the same keys, lists of the same length, values of the same
types, and equal values except where the docs cannot know them: a string with `…` stands for
any text in its place (a job id, a token's name), a list ending in `"…"` for its first items
and more, and the keys in `VOLATILE` (times, speeds, sizes, signed links, cursors) only need
a value of the right type."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from graphql import OperationType, parse
from graphql.language import OperationDefinitionNode

from bulkops.cli import DEMO_PRODUCTS, DEMO_TENANT
from bulkops.config import Settings
from bulkops.dev.seed import seed_products
from bulkops.domain import TERMINAL_STATUSES
from bulkops.storage import Storage
from tests.support import Subscription, make_tenant, run_worker

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "api.md"]
DOCS_URL = "http://127.0.0.1:8000"
JOB_PLACEHOLDER = "<the job id>"
VOLATILE = frozenset(
    {
        "createdAt",
        "startedAt",
        "finishedAt",
        "expiresAt",
        "lastSeenAt",
        "etaSeconds",
        "itemsPerSecond",
        "bytes",
        "url",
        "cursor",
        "endCursor",
        "version",
    }
)
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
ASSIGNED = re.compile(r"^\s*([A-Z][A-Z0-9_]*)=", re.M)


@dataclass(frozen=True)
class Example:
    source: str
    line: int
    language: str
    code: str
    answer: str | None
    answer_language: str | None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def examples(path: Path) -> list[Example]:
    """The runnable blocks of one markdown file, in order, each with its answer: the block
    right after it marked `answer`, or for a subscription left open, the later one marked
    `last` (its last message, once the job started meanwhile has ended)."""
    text = path.read_text()
    found: list[Example] = []
    previous_ran = False
    for match in FENCE.finditer(text):
        language, *marks = match.group("info").split() or [""]
        body = match.group("body")
        if "run" in marks:
            line = text.count("\n", 0, match.start()) + 1
            source = path.relative_to(ROOT).as_posix()
            found.append(Example(source, line, language, body, None, None))
        elif "answer" in marks and previous_ran:
            found[-1] = replace(found[-1], answer=body, answer_language=language)
        elif "last" in marks:
            index = max(i for i, e in enumerate(found) if e.answer is None)
            found[index] = replace(found[index], answer=body, answer_language=language)
        previous_ran = "run" in marks
    return found


def same_shape(expected: Any, actual: Any, path: str = "") -> list[str]:
    """How `actual` differs from the answer the docs show, as readable lines."""
    if isinstance(expected, str) and "…" in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split("…"))
        if isinstance(actual, str) and re.fullmatch(pattern, actual, re.S):
            return []
        return [f"{path}: {actual!r} is not like {expected!r}"]
    if path.rsplit(".", 1)[-1] in VOLATILE:
        if actual is None or expected is None or _kind(actual) == _kind(expected):
            return []
        return [f"{path}: {actual!r} is not a {_kind(expected)}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: {actual!r} is not an object"]
        if set(expected) != set(actual):
            return [f"{path}: keys {sorted(actual)}, the docs show {sorted(expected)}"]
        return [
            d for key in expected for d in same_shape(expected[key], actual[key], f"{path}.{key}")
        ]
    if isinstance(expected, list) and expected[-1:] == ["…"]:
        # The first items, and more like them.
        if not isinstance(actual, list) or len(actual) < len(expected) - 1:
            return [f"{path}: {actual!r} is not a list of at least {len(expected) - 1}"]
        return same_shape(expected[:-1], actual[: len(expected) - 1], path)
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r} is not a list of {len(expected)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in same_shape(e, a, f"{path}.{i}")
        ]
    if _kind(expected) == "number" and _kind(actual) == "number":
        # The docs may round a score or a progress to two decimals.
        return [] if abs(expected - actual) < 0.006 else [f"{path}: {actual!r}, not {expected!r}"]
    return [] if expected == actual else [f"{path}: {actual!r}, not {expected!r}"]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def same_text(expected: str, actual: str) -> list[str]:
    """Line by line, `…` standing for any text."""
    want, got = expected.splitlines(), actual.splitlines()
    if len(want) != len(got):
        return [f"{len(got)} lines, the docs show {len(want)}:\n{actual}"]
    differences = []
    for e, a in zip(want, got, strict=True):
        if "…" in e:
            differences += same_shape(e, a)
        elif e != a:
            differences.append(f"{a!r}, not {e!r}")
    return differences


def job_ids(value: Any) -> list[str]:
    """The ids of jobs in an answer (`{"job": {"id": …}}`), in order."""
    found: list[str] = []
    if isinstance(value, dict):
        job = value.get("job")
        if isinstance(job, dict) and isinstance(job.get("id"), str):
            found.append(job["id"])
        for key, item in value.items():
            if key != "job":
                found += job_ids(item)
    elif isinstance(value, list):
        for item in value:
            found += job_ids(item)
    return found


class Newcomer:
    """Runs the examples one after another against one server, as a reader would."""

    def __init__(
        self,
        *,
        server: str,
        token: str,
        settings: Settings,
        workdir: Path,
        http: httpx.AsyncClient,
        owner: asyncpg.Connection,
    ) -> None:
        self.server = server
        self.token = token
        self.settings = settings
        self.workdir = workdir
        self.http = http
        self.owner = owner
        self.job_id: str | None = None
        # A subscription to every job of the tenant, open while the next examples run.
        self.following: tuple[Example, Subscription] | None = None
        self.shell_state = workdir / ".shell-state"
        self.shell_state.write_text("")

    async def run(self, example: Example) -> list[str]:
        """The differences between the example's answer and the docs'."""
        answer = example.answer
        if example.language == "graphql":
            operation = self._operation(example.code)
            if operation.operation == OperationType.SUBSCRIPTION and not self._variables(operation):
                self.following = (example, await self._open(example.code))
                return []
            if operation.operation == OperationType.SUBSCRIPTION:
                actual: Any = await self._subscribe(example.code, operation)
            else:
                await self._drain()
                actual = await self._post(example.code, operation)
        elif example.language == "sh":
            await self._drain()
            done = await asyncio.to_thread(self._shell, example.code)
            if done.returncode != 0:
                return [f"exit {done.returncode}: {done.stderr}{done.stdout}"]
            output = done.stdout
            if "JOB" in ASSIGNED.findall(example.code):
                self.job_id = self._shell_variable("JOB")
            if example.answer_language != "json":
                if answer is None:
                    return []
                return same_text(answer.replace(DOCS_URL, self.server), output)
            actual = json.loads(output)
        else:
            return [f"cannot run a {example.language} block"]
        queued = job_ids(actual)
        if queued:
            self.job_id = queued[-1]
        if "errors" in actual and (answer is None or '"errors"' not in answer):
            return [f"errors: {actual['errors']}"]
        return self._compare(answer, actual)

    def _compare(self, answer: str | None, actual: Any) -> list[str]:
        if answer is None:
            return []
        # The docs' address is `make dev`'s; links in answers are the server's own.
        differences = same_shape(json.loads(answer.replace(DOCS_URL, self.server)), actual)
        return [*differences, f"it answered: {json.dumps(actual)}"] if differences else []

    async def follow_to_the_end(self) -> tuple[Example, list[str]] | None:
        """Once a job has been queued, the open subscription's messages while a worker
        runs it, to its end: the subscription's example and how its last message differs
        from the docs'. None while nothing has been queued."""
        if self.following is None or not await self._unfinished():
            return None
        example, subscription = self.following
        self.following = None
        worker = asyncio.create_task(run_worker(self.settings))
        seen = []
        try:
            while True:
                message = await subscription.next(timeout=15)
                assert message["type"] == "next", message
                job = next(iter(message["payload"]["data"].values()))
                seen.append(job["status"])
                if job["status"] in TERMINAL_STATUSES:
                    break
        finally:
            await worker
            await subscription.close()
        # Every change of status reaches every subscriber: the reader sees the job run.
        watched = [] if seen[:2] == ["QUEUED", "RUNNING"] else [f"statuses seen: {seen}"]
        return example, watched + self._compare(example.answer, message["payload"])

    async def _unfinished(self) -> bool:
        count: int = await self.owner.fetchval(
            "SELECT count(*) FROM jobs WHERE status <> ALL($1::text[])",
            [status.value for status in TERMINAL_STATUSES],
        )
        return count > 0

    async def _drain(self) -> None:
        """Let a worker take every job queued so far, as `make dev`'s would by now."""
        if await self._unfinished():
            await run_worker(self.settings)

    def _operation(self, code: str) -> OperationDefinitionNode:
        [operation] = [
            d
            for d in parse(self._filled(code)).definitions
            if isinstance(d, OperationDefinitionNode)
        ]
        return operation

    def _filled(self, code: str) -> str:
        return code.replace(JOB_PLACEHOLDER, self.job_id or JOB_PLACEHOLDER)

    def _variables(self, operation: OperationDefinitionNode) -> dict[str, Any]:
        names = {v.variable.name.value for v in operation.variable_definitions or ()}
        return {"id": self.job_id} if names == {"id"} else {}

    async def _post(self, code: str, operation: OperationDefinitionNode) -> Any:
        response = await self.http.post(
            "/graphql",
            json={"query": self._filled(code), "variables": self._variables(operation)},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        return response.json()

    async def _open(self, code: str, variables: dict[str, Any] | None = None) -> Subscription:
        subscription = Subscription(
            self.server.replace("http://", "ws://") + "/graphql", self.token
        )
        await subscription.connect()
        await subscription.start(self._filled(code), variables or {})
        return subscription

    async def _subscribe(self, code: str, operation: OperationDefinitionNode) -> Any:
        """Follows the job live while a worker runs it; the last message it got."""
        subscription = await self._open(code, self._variables(operation))
        try:
            worker = asyncio.create_task(run_worker(self.settings))
            messages = await subscription.messages(timeout=15)
            await worker
        finally:
            await subscription.close()
        payloads = [m["payload"] for m in messages if m["type"] == "next"]
        assert messages[-1]["type"] == "complete", messages
        return payloads[-1]

    def _shell_variable(self, name: str) -> str | None:
        """A variable the shell blocks have set so far (the latest value)."""
        found = re.findall(rf'^declare -- {name}="([^"]*)"$', self.shell_state.read_text(), re.M)
        return found[-1] if found else None

    def _shell(self, code: str) -> subprocess.CompletedProcess[str]:
        names = sorted(set(ASSIGNED.findall(code)))
        keep = (
            f"\ndeclare -p {' '.join(names)} >> {shlex.quote(str(self.shell_state))}"
            if names
            else ""
        )
        script = (
            f"set -euo pipefail\nsource {shlex.quote(str(self.shell_state))}\n"
            + code.replace(DOCS_URL, self.server)
            + keep
        )
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.workdir,
            env={"PATH": os.environ["PATH"], "TOKEN": self.token, "HOME": str(self.workdir)},
            capture_output=True,
            text=True,
            timeout=30,
        )


async def test_the_docs_examples_run_in_order_on_the_demo_catalog(
    server: str,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    tmp_path: Path,
) -> None:
    # The docs' shell examples use curl and jq; `make test` installs them when missing.
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    assert not missing, f"install {' and '.join(missing)} (make test does) to run the docs"
    demo = await make_tenant(owner, DEMO_TENANT)
    await seed_products(owner, storage, DEMO_TENANT, DEMO_PRODUCTS)
    workdir = tmp_path / "newcomer"
    workdir.mkdir()
    newcomer = Newcomer(
        server=server, token=demo.token, settings=settings, workdir=workdir, http=http, owner=owner
    )
    runnable = [example for path in DOCS for example in examples(path)]
    assert {example.source for example in runnable} == {"README.md", "docs/api.md"}
    wrong = []
    for example in runnable:
        ran = [(example, await newcomer.run(example))]
        followed = await newcomer.follow_to_the_end()
        for where, differences in ran + ([followed] if followed else []):
            if differences:
                wrong.append(f"{where.where} ({where.language}):\n  " + "\n  ".join(differences))
    assert newcomer.following is None, "a subscription was left open: no job ended meanwhile"
    assert not wrong, "examples answer differently from the docs:\n" + "\n".join(wrong)
