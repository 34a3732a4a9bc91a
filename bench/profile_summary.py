"""Summarise a py-spy raw profile (collapsed stacks, `--format raw --threads`).

    .venv/bin/python bench/profile_summary.py bench/results/profile-memory-500.txt [--duration 20] [--json]
    .venv/bin/python bench/profile_summary.py PATH.txt --parts [--per-delta-us 150]

Prints (or returns) the share of samples per thread, the functions with the
most samples on top of the stack (self) and the ones on the stack at all
(inclusive), as percentages of all samples taken while a thread was active.
`--parts` sorts every sample into the parts of a relayed delta instead (the
first part whose marker is on its stack; docs/performance.md), with
`--per-delta-us` (the run's CPU per delta) as µs per delta too.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

# The parts of a relayed delta, each by markers of its code on a stack; a sample
# counts for the first part that matches (sending comes before the hub that calls it).
PARTS = [
    ("the database thread", ("ThreadPoolExecutor", "uvloop_0")),
    ("sending frames (daphne, autobahn, Twisted, the socket)",
     ("send_frame", "handle_reply", "sendMessage", "chat/transport.py", "doWrite")),
    ("reading the upstream (aiohttp, httpx, the GPTalk parser)", ("aiohttp/", "httpx", "chat/upstream/")),
    ("the hub, the followers, encoding frames", ("chat/delivery/", "chat/follow.py")),
    ("the generation loop and the provider stream", ("chat/generation/", "chat/providers/")),
    ("reading frames from the sockets", ("doRead", "ChatConsumer", "channels/")),
]  # fmt: skip
REST = "the event loop and the rest"


def parts(path: str | Path) -> dict[str, float]:
    """Share of all samples per part of a relayed delta (PARTS), largest first."""
    counts: collections.Counter = collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        name = next((name for name, markers in PARTS if any(m in stack for m in markers)), REST)
        counts[name] += int(count)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


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
    if "--parts" in argv:
        per_delta = float(argv[argv.index("--per-delta-us") + 1]) if "--per-delta-us" in argv else None
        for name, share in parts(argv[0]).items():
            us = f"  {share * per_delta:5.1f} µs" if per_delta else ""
            print(f"{100 * share:5.1f}%{us}  {name}")
        return 0
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
