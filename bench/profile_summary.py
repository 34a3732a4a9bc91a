"""Summarise a py-spy raw profile (collapsed stacks, `--format raw --threads`).

    .venv/bin/python bench/profile_summary.py bench/results/profile-memory-500.txt [--duration 20] [--json]

Prints (or returns) the share of samples per thread, the functions with the
most samples on top of the stack (self) and the ones on the stack at all
(inclusive), as percentages of all samples taken while a thread was active.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

THREAD = re.compile(r"^(process \d+:)?\"?thread \(0x[0-9a-fA-F]+\)\"?$|^thread \(")


def summarise(path: str | Path, *, top: int = 25, rate: float = 100, duration: float | None = None) -> dict:
    """Shares of all samples; with `duration`, also how busy each thread was (% of wall time)."""
    self_counts: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        if frames and ("thread (" in frames[0] or frames[0].startswith("process ")):
            # --threads puts the thread first; name it by its root function.
            threads[frames[0]] += n
            frames = [f for f in frames if "thread (" not in f and not f.startswith("process ")]
        if not frames:
            continue
        self_counts[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def pct(counter):
        return [{"pct": round(100 * c / total, 1), "samples": c, "function": f} for f, c in counter.most_common(top)]

    thread_rows = pct(threads)
    if duration:
        for row in thread_rows:
            row["busy_pct_of_wall"] = round(100 * row["samples"] / (rate * duration), 1)
    return {"samples": total, "threads": thread_rows, "self": pct(self_counts), "inclusive": pct(inclusive)}


def main(argv: list[str]) -> int:
    duration = float(argv[argv.index("--duration") + 1]) if "--duration" in argv else None
    summary = summarise(argv[0], duration=duration)
    if "--json" in argv:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{summary['samples']} samples")
    for section in ("threads", "self", "inclusive"):
        print(f"--- {section}")
        for row in summary[section]:
            busy = f"  (busy {row['busy_pct_of_wall']}% of wall)" if "busy_pct_of_wall" in row else ""
            print(f"{row['pct']:5.1f}%  {row['function']}{busy}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
