"""`make bench`: every workload of BENCHMARKS.md against its baseline, printed as one table
and written to bench/results/latest.json (`--quick`: a small catalog, to quick.json).

Everything runs on embedded PostgreSQL and Valkey servers started in the data folder
(.bench-data/ by default) and removed afterwards; the service runs as `bulkops serve` and
`bulkops worker` processes, as a user runs it.

Run: .venv/bin/python -m bench.run [--quick] [--only W1,W5] [--data DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from bench.catalog import Catalog, build_catalog, log, migrate_template
from bench.harness import Harness
from bench.plan import FULL, QUICK, Plan
from bench.results import Result, report, table, write_json
from bench.stack import raise_open_files_limit
from bench.workloads import WORKLOADS
from bulkops.dev.embedded import ensure_servers

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


async def run_workloads(
    servers_db: str,
    servers_redis: str,
    data: Path,
    plan: Plan,
    only: list[str],
    *,
    reuse: bool,
    profile: bool,
) -> dict[str, Result]:
    catalog = Catalog.load(servers_db, servers_redis, data, plan) if reuse else None
    if catalog is None:
        catalog = await build_catalog(servers_db, servers_redis, data, plan)
    else:
        log("reusing the catalog built by an earlier run")
        if applied := await migrate_template(servers_db):
            log(f"applied the migrations added since: {', '.join(applied)}")
    harness = Harness(catalog, plan, profile=profile)
    results: dict[str, Result] = {}
    for wid in only:
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        log(f"--- {wid}")
        try:
            results[wid] = await WORKLOADS[wid](harness)
        except Exception as exc:
            traceback.print_exc()
            results[wid] = Result(None, None, "", "", False, f"failed: {exc!r}"[:300])
            harness.invalidate()
        took = time.perf_counter() - started
        # The machine is shared: how busy it was says how far to trust the figures.
        results[wid].details.update(
            seconds=round(took), load_average=[load_before, os.getloadavg()[0]]
        )
        log(f"--- {wid} took {took:.0f} s")
    return results


def revision() -> str:
    """The commit measured, and whether the working tree differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' with uncommitted changes' if dirty else ''}" if head else "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small catalog, one run")
    parser.add_argument("--only", default="", help="comma-separated workload ids, e.g. W1,W5")
    parser.add_argument("--runs", type=int, default=None, help="runs per workload (W1-W5, W9)")
    parser.add_argument("--data", type=Path, default=None, help="data folder (servers, files)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON file to write")
    parser.add_argument("--keep-data", action="store_true", help="keep the data folder")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the catalog a --keep-data run left in the data folder (implies --keep-data)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample every API and worker process with py-spy (pip install py-spy): "
        "collapsed stacks next to their logs; the figures are then not clean",
    )
    args = parser.parse_args(argv)
    only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    args.workloads = only or list(WORKLOADS)
    args.keep_data = args.keep_data or args.reuse
    if args.out is None:
        name = "partial" if only else ("quick" if args.quick else "latest")
        args.out = RESULTS / f"{name}.json"
    if args.data is None:
        args.data = ROOT / ".bench-data" / ("quick" if args.quick else "full")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.runs is not None:
        plan = replace(
            plan,
            runs=args.runs,
            match_runs=min(plan.match_runs, args.runs),
            small_job_runs=args.runs,
        )
    raise_open_files_limit()
    if args.data.exists() and not args.reuse:
        shutil.rmtree(args.data)
    (args.data / "logs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    commit = revision()
    servers = ensure_servers(
        None, None, args.data, persist=False, storage_url=(args.data / "files").resolve().as_uri()
    )
    try:
        assert servers.database_url and servers.redis_url
        results = asyncio.run(
            run_workloads(
                servers.database_url,
                servers.redis_url,
                args.data,
                plan,
                args.workloads,
                reuse=args.reuse,
                profile=args.profile,
            )
        )
    finally:
        servers.stop()
        if not args.keep_data:
            for part in ("pg", "files", "unstored"):
                shutil.rmtree(args.data / part, ignore_errors=True)
    payload = report(results)
    write_json(args.out, payload)
    write_json(
        args.out.with_suffix(".details.json"),
        {
            **payload,
            "plan": plan.name,
            "commit": commit,
            "details": {w: r.details for w, r in results.items()},
        },
    )
    print(f"\n{plan.name} run, {payload['date']}, {payload['machine']}\n")
    print(table(results))
    log(f"\nwrote {args.out} in {time.perf_counter() - started:.0f} s")
    failed = [wid for wid, r in results.items() if r.ours is None]
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (see the logs in {args.data / 'logs'})")


if __name__ == "__main__":
    main()
