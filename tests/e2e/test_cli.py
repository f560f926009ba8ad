"""The `bulkops` commands an operator runs, as real processes against the real API: the jobs
table, job actions, `watch` and its exit codes, token list and revoke, the one-line errors
(refused token, unknown job, no API), and a second `bulkops dev` refusing at once."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from bulkops.config import Settings
from bulkops.db.tenants import insert_token
from bulkops.services.auth import hash_token, new_token
from bulkops.storage import Storage
from tests.api.queries import SET_STATUS
from tests.support import GraphQLClient, Tenant, make_products, run_worker


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The environment of a command run on the test's servers, and nothing of a running
    `bulkops dev` or the caller's own settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BULKOPS_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        DATABASE_URL=settings.database_url or "",
        REDIS_URL=settings.redis_url or "",
        BULKOPS_DATA_DIR=str(tmp_path / "cli-data"),
    )
    return env


async def bulkops(env: dict[str, str], *args: str, timeout: float = 20) -> Ran:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkops",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def one_line(ran: Ran) -> str:
    """The error a command printed: exactly one line, no traceback."""
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1, ran.err
    return lines[0]


async def queue_job(gql: GraphQLClient, ids: list[int], *, policy: str = "CONTINUE") -> str:
    options = {"mode": "BACKGROUND", "errorPolicy": policy}
    selection = {"ids": [str(i) for i in ids]}
    result = await gql(SET_STATUS, {"selection": selection, "status": "ACTIVE", "options": options})
    return str(result["setProductStatus"]["job"]["id"])


async def test_jobs_lists_a_queued_job_and_cancel_cancels_it(
    server: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    cli_env: dict[str, str],
) -> None:
    job_id = await queue_job(gql, await make_products(owner, storage, tenant, 5, with_images=False))
    target = ("--url", server, "--token", tenant.token)

    listed = await bulkops(cli_env, "jobs", *target)
    assert listed.code == 0, listed.err
    row = next(line for line in listed.out.splitlines() if job_id in line)
    assert "setProductStatus" in row and "QUEUED" in row and "0% of 5" in row
    token_name = await owner.fetchval("SELECT name FROM api_tokens LIMIT 1")
    assert token_name in row
    assert "1 of 1 jobs" in listed.out

    cancelled = await bulkops(cli_env, "cancel", job_id, *target)
    assert (cancelled.code, cancelled.out.strip()) == (0, f"{job_id} CANCELLED")
    finished = await bulkops(cli_env, "jobs", "--status", "queued", *target)
    assert job_id not in finished.out
    again = await bulkops(cli_env, "cancel", job_id, *target)
    assert again.code == 1
    assert one_line(again) == f"bulkops cancel: job {job_id}: The job already ended CANCELLED."


@pytest.mark.parametrize(
    ("outcome", "code"), [("SUCCEEDED", 0), ("PARTIAL", 10), ("FAILED", 11), ("CANCELLED", 12)]
)
async def test_watch_exits_with_the_jobs_outcome(
    outcome: str,
    code: int,
    server: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    cli_env: dict[str, str],
) -> None:
    ids = await make_products(owner, storage, tenant, 20, with_images=False)
    job_id = await queue_job(gql, ids, policy="ABORT" if outcome == "FAILED" else "CONTINUE")
    if outcome == "CANCELLED":
        await gql("mutation($id: ID!) { cancelJob(id: $id) { __typename } }", {"id": job_id})
    else:
        if outcome in ("PARTIAL", "FAILED"):
            # A product deleted after the job was accepted fails as an item.
            await owner.execute("DELETE FROM products WHERE id = $1", ids[12])
        await run_worker(settings.model_copy(update={"batch_size": 10}))

    watched = await bulkops(cli_env, "watch", job_id, "--url", server, "--token", tenant.token)
    assert (watched.code, watched.out.strip()) == (code, outcome), watched.err
    # The final state of the bar, on stderr.
    assert outcome in watched.err


async def test_a_refused_token_an_unknown_job_and_no_api_are_one_line_each(
    server: str, tenant: Tenant, cli_env: dict[str, str]
) -> None:
    bad = ("--url", server, "--token", new_token())
    listed = await bulkops(cli_env, "jobs", *bad)
    assert (listed.code, one_line(listed)) == (3, "bulkops jobs: the token was refused")
    watched = await bulkops(cli_env, "watch", str(uuid.uuid4()), *bad)
    assert (watched.code, one_line(watched)) == (3, "bulkops watch: the token was refused")

    unknown = str(uuid.uuid4())
    good = ("--url", server, "--token", tenant.token)
    paused = await bulkops(cli_env, "pause", unknown, *good)
    assert (paused.code, one_line(paused)) == (1, f"bulkops pause: no job {unknown}")
    watched = await bulkops(cli_env, "watch", unknown, *good)
    assert (watched.code, one_line(watched)) == (1, f"bulkops watch: no job {unknown}")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for command in ("jobs", "retry"):
        args = (command, *(() if command == "jobs" else (unknown,)))
        down = await bulkops(cli_env, *args, "--url", nobody, "--token", tenant.token)
        assert down.code == 4
        assert one_line(down).startswith(f"bulkops {command}: cannot reach the API at {nobody}")


async def test_token_list_and_revoke(
    server: str,
    owner: asyncpg.Connection,
    tenant: Tenant,
    cli_env: dict[str, str],
) -> None:
    ci_token = new_token()
    await insert_token(owner, tenant.id, hash_token(ci_token), scope="read", name="ci")
    prefix = hash_token(ci_token).hex()[:8]

    listed = await bulkops(cli_env, "token", "list", "--tenant", tenant.name)
    assert listed.code == 0, listed.err
    ci_row = next(line for line in listed.out.splitlines() if " ci " in line)
    assert "read" in ci_row and prefix in ci_row
    assert "admin" in listed.out

    missing = await bulkops(cli_env, "token", "revoke", "nosuchtoken")
    assert (missing.code, one_line(missing)) == (
        1,
        "bulkops token: no active token is named or starts with 'nosuchtoken'",
    )
    revoked = await bulkops(cli_env, "token", "revoke", prefix, "--tenant", tenant.name)
    assert (revoked.code, revoked.out.strip()) == (
        0,
        f"revoked {tenant.name}/ci (read, hash {prefix})",
    )
    listed = await bulkops(cli_env, "token", "list", "--tenant", tenant.name)
    ci_row = next(line for line in listed.out.splitlines() if " ci " in line)
    assert time.strftime("%Y-%m-%d", time.gmtime()) in ci_row.split("│")[-2]

    async with httpx.AsyncClient(base_url=server) as http:
        refused = await http.post(
            "/graphql",
            json={"query": "{ viewer { subject } }"},
            headers={"Authorization": f"Bearer {ci_token}"},
        )
    assert refused.status_code == 401


def snapshot(folder: Path) -> dict[str, tuple[float, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


async def test_a_second_dev_on_the_same_data_folder_refuses_and_touches_nothing(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    data = tmp_path / "dev-data"
    (data / "valkey").mkdir(parents=True)
    # What a running `bulkops dev` keeps there, which a second one used to delete on its way out.
    (data / "urls.json").write_text('{"database_url": "postgresql://first"}')
    (data / "valkey" / "valkey.pid").write_text("12345\n")
    (data / "dev.lock").write_text("4242\n")
    before = snapshot(data)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])

    with (data / "dev.lock").open("r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        refused = await bulkops(cli_env, "dev", "--data-dir", str(data), "--port", port)
        elapsed = time.monotonic() - started

    assert refused.code == 1
    assert refused.out == ""
    assert one_line(refused) == (
        f"bulkops dev: another `bulkops dev` (pid 4242) is using {data}; stop it first, "
        "or give this one another --data-dir"
    )
    assert elapsed < 10
    assert snapshot(data) == before


async def test_dev_refuses_a_port_in_use_before_printing_or_starting_anything(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    data = tmp_path / "dev-data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = await bulkops(cli_env, "dev", "--data-dir", str(data), "--port", str(port))
    assert refused.code == 1
    assert refused.out == ""
    assert one_line(refused).startswith(f"bulkops dev: cannot listen on 127.0.0.1:{port}")
    assert sorted(p.name for p in data.iterdir()) == ["dev.lock"]
