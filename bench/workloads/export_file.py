"""X1: the whole catalog written to a stored CSV file by an exportProducts job, then
downloaded through its signed link, against `COPY ... TO STDOUT` into a local file.

Ours: `exportProducts(format: CSV, options: {mode: BACKGROUND})` sent, timed to the
terminal state seen by a `job` subscriber (the file is complete then); then the job's
`resultFile` read and the file downloaded through its link (no token), timed from the
request to the last byte. The download must have `resultFile.bytes` bytes, and as many as
the baseline's file.

Baseline: the export's own COPY (bulkops.db.export.export_query, no filter, with the same
`SET LOCAL`) to STDOUT over asyncpg into a local file, then `fsync`, as `bulkops_app` with
the tenant set. One statement and one file write: no batches, no job, no progress.

What the baseline leaves out: the job (queue, lease, per-batch transaction with the
cursor, the file's recorded size and an fsync per batch), reading each batch's ids before
copying them, and progress publishing.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import httpx

from bench.catalog import BenchError, connect_app, log
from bench.clients import graphql, mutation_sender, timed_job
from bench.harness import Harness
from bench.results import Result, median
from bench.stack import Stack
from bulkops.db.export import export_query

JOB_TIMEOUT = 3600.0
MB = 1024 * 1024
EXPORT = """mutation {
  exportProducts(format: CSV, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message field } } }"""
RESULT_FILE = "query($id: ID!) { job(id: $id) { status resultFile { url rows bytes } } }"


@dataclass(frozen=True)
class FileExport:
    job_s: float
    download_s: float
    size: int


async def export_job(h: Harness, stack: Stack) -> FileExport:
    token = h.catalog.tenant.token
    timed = await timed_job(
        stack, token, mutation_sender(token, EXPORT, {}, "exportProducts"), timeout=JOB_TIMEOUT
    )
    if timed.final["status"] != "SUCCEEDED":
        raise BenchError(f"X1: the export job ended {timed.final['status']}")
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=600) as client:
        job = (await graphql(client, token, RESULT_FILE, {"id": timed.job_id}))["job"]
        file = job["resultFile"]
        url = httpx.URL(file["url"])
        size = 0
        started = time.perf_counter()
        async with client.stream("GET", url.raw_path.decode()) as response:
            if response.status_code != 200:
                raise BenchError(f"X1: the download answered {response.status_code}")
            async for chunk in response.aiter_raw():
                size += len(chunk)
        download_s = time.perf_counter() - started
    if size != file["bytes"]:
        raise BenchError(f"X1: downloaded {size} bytes, resultFile says {file['bytes']}")
    return FileExport(timed.seconds, download_s, size)


async def copy_to_file(h: Harness) -> tuple[float, int]:
    query, args = export_query(None, "csv")
    conn = await connect_app(h.catalog.work_url)
    with tempfile.NamedTemporaryFile(dir=h.catalog.run_files.parent, suffix=".csv") as out:

        async def sink(chunk: bytes) -> None:
            out.write(chunk)

        try:
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    "SELECT set_config('bulkops.tenant_id', $1, true)", h.catalog.tenant.id
                )
                await conn.execute("SET LOCAL enable_bitmapscan = off")
                await conn.copy_from_query(query, *args, output=sink, format="csv", header=True)
            out.flush()
            os.fsync(out.fileno())
            seconds = time.perf_counter() - started
            size = out.tell()
        finally:
            await conn.close()
    return seconds, size


async def x1(h: Harness) -> Result:
    await h.shared()
    await copy_to_file(h)
    ours: list[FileExport] = []
    base: list[tuple[float, int]] = []
    async with h.running("X1", workers=1) as stack:
        for run in range(1, h.plan.runs + 1):
            ours.append(await export_job(h, stack))
            base.append(await copy_to_file(h))
            if ours[-1].size != base[-1][1]:
                raise BenchError(f"X1: the file has {ours[-1].size} bytes, COPY {base[-1][1]}")
            log(
                f"X1 run {run}: job {ours[-1].job_s:.2f} s + download "
                f"{ours[-1].download_s:.2f} s, COPY to a file {base[-1][0]:.2f} s"
            )
    ours_s = median(t.job_s for t in ours)
    base_s = median(s for s, _ in base)
    size = ours[0].size / MB
    return Result(
        ours=ours_s,
        baseline=base_s,
        unit="s",
        target="ratio <= 3",
        met=ours_s / base_s <= 3,
        note=(
            f"{h.catalog.products:,} products, {size:.0f} MB; median of {len(ours)}; "
            f"mutation sent to SUCCEEDED seen; download through the link "
            f"{median(t.download_s for t in ours):.2f} s more"
        ),
        details={
            "ours_job_s": [round(t.job_s, 3) for t in ours],
            "ours_download_s": [round(t.download_s, 3) for t in ours],
            "baseline_s": [round(s, 3) for s, _ in base],
            "bytes": ours[0].size,
        },
    )
