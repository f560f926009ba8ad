"""`make bench-quick` end to end: the whole benchmark harness on a small catalog finishes
and reports every workload in BENCHMARKS.md's shape. Nothing about speed: a slow machine
must not fail this test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = [*(f"W{n}" for n in range(1, 11)), "R1", "X1", "E1", "E2", "E3"]
# The workloads measured against a baseline; the others are reported absolute.
WITH_BASELINE = {"W1", "W2", "W3", "W4", "W5", "W9", "R1", "X1", "E1", "E2", "E3"}
ENTRY_KEYS = {"ours", "baseline", "unit", "ratio", "target", "met", "note"}


@pytest.mark.timeout(300)
def test_bench_quick_reports_every_workload(tmp_path: Path) -> None:
    # Under the repository, not tmp_path: the embedded PostgreSQL runs as its own system
    # user, which cannot enter pytest's private temporary folders.
    data = ROOT / ".pytest-data" / f"bench-quick-{os.getpid()}"
    out = tmp_path / "quick.json"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.run", "--quick", "--data", str(data), "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=280,
        )
    finally:
        shutil.rmtree(data, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert isinstance(report["machine"], str)
    assert isinstance(report["date"], str)
    assert list(report["workloads"]) == WORKLOADS
    for wid, entry in report["workloads"].items():
        assert set(entry) == ENTRY_KEYS, wid
        assert isinstance(entry["ours"], int | float), (wid, entry)
        if wid in WITH_BASELINE:
            assert isinstance(entry["baseline"], int | float), (wid, entry)
            assert isinstance(entry["ratio"], int | float), (wid, entry)
        else:
            assert entry["baseline"] is None, (wid, entry)
