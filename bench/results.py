"""What a workload reports, and the table and JSON file of a whole run."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Result:
    """One workload's figures. `ours` and `baseline` are medians in `unit`; `met` is None
    when the workload has no target (reported only)."""

    ours: float | None
    baseline: float | None
    unit: str
    target: str
    met: bool | None
    note: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return round(self.ours / self.baseline, 2)

    def to_json(self) -> dict[str, Any]:
        """The entry of BENCHMARKS.md's latest.json shape."""
        return {
            "ours": _round(self.ours),
            "baseline": _round(self.baseline),
            "unit": self.unit,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 3 if abs(value) < 100 else 1)


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`th percentile, interpolated between the closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def all_met(*checks: bool) -> bool:
    return all(checks)


def machine() -> str:
    memory_gb = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.release()} {cpu}, {os.cpu_count()} CPUs, "
        f"{memory_gb:.0f} GB RAM, Python {platform.python_version()}, "
        "embedded PostgreSQL 18 and Valkey 8 on the same machine"
    )


def report(results: dict[str, Result]) -> dict[str, Any]:
    return {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "workloads": {wid: r.to_json() for wid, r in results.items()},
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(results: dict[str, Result]) -> str:
    """A Markdown table: it prints well and pastes into docs/benchmarks.md as it is."""
    lines = [
        "| id | ours | baseline | unit | ratio | target | met | note |",
        "| --- | ---: | ---: | --- | ---: | --- | --- | --- |",
    ]
    for wid, r in results.items():
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(
            f"| {wid} | {_fmt(r.ours)} | {_fmt(r.baseline)} | {r.unit} | {ratio} | "
            f"{r.target} | {met} | {r.note} |"
        )
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
