"""Compare two memory probes of bench/soak.py --probe: what grew between them.

    .venv/bin/python bench/memdiff.py DIR A B [--top 15] [--group traceback|lineno|filename] [--frames 8]

Prints the probes' RSS, the gc object counts by type that changed most, the
channel-layer sizes, and (when both have one) the tracemalloc difference,
largest growth first, each with its traceback (innermost frame last).
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("a", type=int)
    parser.add_argument("b", type=int)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--group", default="traceback", choices=("traceback", "lineno", "filename"))
    parser.add_argument("--frames", type=int, default=8, help="frames of each traceback to print")
    args = parser.parse_args(argv)
    directory = Path(args.directory)
    ra = json.loads((directory / f"probe-{args.a}.json").read_text())
    rb = json.loads((directory / f"probe-{args.b}.json").read_text())

    print(f"RSS (KiB) {ra['rss_kb_before_collect']} -> {rb['rss_kb_before_collect']}"
          f"  (after trim: {ra.get('rss_kb_after_trim')} -> {rb.get('rss_kb_after_trim')})")
    print(f"gc objects {ra['gc_objects']} -> {rb['gc_objects']}; "
          f"allocated blocks {ra['allocated_blocks']} -> {rb['allocated_blocks']}; "
          f"traced KiB {ra.get('traced_kb')} -> {rb.get('traced_kb')}")
    print(f"layers {ra.get('layers')} -> {rb.get('layers')}")
    print(f"pending tasks {ra.get('tasks_pending')} -> {rb.get('tasks_pending')}: {rb.get('task_names')}")
    print(f"threads {len(ra['threads'])} -> {len(rb['threads'])}; DB wrappers {ra.get('db_connections')} -> "
          f"{rb.get('db_connections')}")
    imported = sorted(set(rb.get("modules", ())) - set(ra.get("modules", ())))
    print(f"modules imported in between: {len(imported)}: {' '.join(imported[:60])}")
    ca, cb = ra["gc_counts"], rb["gc_counts"]
    changed = sorted(((cb.get(k, 0) - ca.get(k, 0), k) for k in set(ca) | set(cb)), reverse=True)
    print("\ngc counts by type, largest change:")
    for diff, name in [c for c in changed if c[0]][: args.top]:
        print(f"  {diff:+7d}  {ca.get(name, 0):7d} -> {cb.get(name, 0):7d}  {name}")

    sa, sb = directory / f"probe-{args.a}.tracemalloc", directory / f"probe-{args.b}.tracemalloc"
    if not (sa.exists() and sb.exists()):
        return 0
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
              tracemalloc.Filter(False, "*/memprobe/sitecustomize.py")]
    snap_a = tracemalloc.Snapshot.load(str(sa)).filter_traces(ignore)
    snap_b = tracemalloc.Snapshot.load(str(sb)).filter_traces(ignore)
    stats = snap_b.compare_to(snap_a, args.group)
    total = sum(s.size_diff for s in stats)
    print(f"\ntracemalloc, grouped by {args.group}: total {total / 1024:+.1f} KiB "
          f"({sum(s.size for s in stats) / 1024:.0f} KiB traced)")
    for stat in stats[: args.top]:
        print(f"\n{stat.size_diff / 1024:+9.1f} KiB  {stat.count_diff:+6d} blocks  "
              f"(now {stat.size / 1024:.1f} KiB in {stat.count})")
        frames = stat.traceback.format(limit=args.frames) if args.group == "traceback" else [
            f"  {stat.traceback[0].filename}:{stat.traceback[0].lineno}"]
        for line in frames:
            print("    " + line.strip() if not line.startswith("  ") else "   " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
