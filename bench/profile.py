"""Where a process spent its time: a summary of the py-spy samples `--profile` collects.

Run: .venv/bin/python -m bench.profile .bench-data/full/logs/W8-api.pyspy.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Frames of this repository's modules are named relative to it, wherever it is checked out.
ROOT = f"{Path(__file__).resolve().parent.parent}/"
# A frame as py-spy's raw format writes it: "function (path/to/module.py:123)".
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")
# Leaves that mean waiting: the selector of asyncio's loop, or uvloop's loop (in C, so the
# innermost Python frame is the one that started it).
IDLE = ("select (selectors.py", "poll (selectors.py", "Runner.run (asyncio/runners.py")


def _name(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", ROOT):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def summarize(path: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";")]
        total += n
        if frames[-1].startswith(IDLE):
            idle += n
            continue
        leaf[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    if not total:
        return f"{path}: no samples"
    busy = total - idle
    lines = [f"{path.name}: {total} samples, {busy / total:.0%} busy (not waiting for events)"]
    lines.append("  inclusive (share of busy samples):")
    lines += [f"    {n / busy:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines.append("  self:")
    lines += [f"    {n / busy:6.1%}  {name}" for name, n in leaf.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(summarize(path, args.top))


if __name__ == "__main__":
    main()
