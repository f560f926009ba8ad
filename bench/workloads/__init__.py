"""The workloads of BENCHMARKS.md, in table order: each takes the harness and returns its
Result (ours, baseline, target, note)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.harness import Harness
from bench.results import Result
from bench.workloads import (
    bulk,
    export,
    export_file,
    inline,
    match,
    outside,
    progress,
    roundtrip,
    scaling,
    small_jobs,
)

Workload = Callable[[Harness], Awaitable[Result]]

WORKLOADS: dict[str, Workload] = {
    "W1": bulk.w1,
    "W2": bulk.w2,
    "W3": bulk.w3,
    "W4": match.w4,
    "W5": export.w5,
    "W6": inline.w6,
    "W7": progress.w7,
    "W8": progress.w8,
    "W9": small_jobs.w9,
    "W10": scaling.w10,
    "R1": roundtrip.r1,
    "X1": export_file.x1,
    "E1": outside.e1,
    "E2": outside.e2,
    "E3": outside.e3,
}
