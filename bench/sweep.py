"""The whole benchmark: relay runs over N, event loops and processes, linearity, soak.

    .venv/bin/python bench/sweep.py --nice -10             # the defaults below, ~15 min
    .venv/bin/python bench/sweep.py --streams 1 50 --layers memory --no-soak

Each relay run is its own `bench/relay.py` process (fresh emulator, database and
`manage.py serve`): N streams on one process per layer (uvloop), the same N on
asyncio's own loop at --asyncio-at, and two processes with Redis and
PostgreSQL at --processes-at. Writes bench/results/<name>.json (every run)
and bench/results/<name>.png (latency and throughput against N); the tables
of docs/performance.md come from `bench/report.py <name>.json`. A py-spy
profile of the site at --profile-at streams goes to bench/profiles/ (not
kept in git: regenerate it with this command).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import machine_info  # noqa: E402


def run_json(cmd: list[str], out: Path, timeout: float) -> dict:
    cmd = cmd[0].split() + cmd[1:]
    started = time.monotonic()
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "command": cmd}
    took = round(time.monotonic() - started, 1)
    if proc.returncode != 0 or not out.exists():
        return {"error": f"exit {proc.returncode}", "stderr": proc.stderr[-3000:], "command": cmd, "took_s": took}
    result = json.loads(out.read_text())
    result["command"] = " ".join(cmd[cmd.index(sys.executable) + 1:])
    result["took_s"] = took
    print(f"  {took} s  {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}",
          file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 50, 100, 200, 500])
    parser.add_argument("--layers", nargs="+", default=["memory"], choices=("memory", "redis"))
    parser.add_argument("--asyncio-at", type=int, nargs="*", default=[100, 200],
                        help="also run these N on asyncio's own event loop (memory layer)")
    parser.add_argument("--processes-at", type=int, nargs="*", default=[200],
                        help="also run these N on two processes (Redis layer, PostgreSQL)")
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--deadline-s", type=float, default=60)
    parser.add_argument("--profile-at", type=int, default=100, help="py-spy the site at this N (0: never)")
    parser.add_argument("--linearity", type=int, nargs="*", default=[150, 600, 2400],
                        help="reply lengths of the wire-bytes linearity runs (N=10, memory)")
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the benchmark processes at this niceness (negative needs root): on a shared "
                             "machine it keeps other work from skewing the figures")
    parser.add_argument("--name", default=dt.date.today().isoformat(), help="results/<name>.json")
    args = parser.parse_args(argv)

    results_dir = BENCH / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gptalk-sweep-"))  # one JSON per run; all of them end up in <name>.json
    python = sys.executable
    if args.nice:
        python = f"nice -n {args.nice} {python}"  # split below
    report: dict = {
        "name": args.name,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "command": "bench/sweep.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "runs": [],
        "linearity": [],
        "soak": {},
    }
    profiles = BENCH / "profiles"
    for layer in args.layers:
        for n in args.streams:
            out = work / f"relay-{layer}-{n}.json"
            cmd = [python, "bench/relay.py", "--streams", str(n), "--layer", layer, "--db", args.db,
                   "--deadline-s", str(args.deadline_s), "--out", str(out)]
            if n == args.profile_at and layer == "memory":
                cmd += ["--py-spy", str(profiles / f"{args.name}-{layer}-{n}"), "--py-spy-delay-s", "0.5",
                        "--py-spy-s", "3"]
            report["runs"].append(run_json(cmd, out, timeout=args.deadline_s * 2 + 240))
            save(report, results_dir)
    for n in args.asyncio_at:
        out = work / f"relay-asyncio-{n}.json"
        cmd = [python, "bench/relay.py", "--streams", str(n), "--layer", "memory", "--db", args.db,
               "--loop", "asyncio", "--deadline-s", str(args.deadline_s), "--out", str(out)]
        report["runs"].append(run_json(cmd, out, timeout=args.deadline_s * 2 + 240))
        save(report, results_dir)
    for n in args.processes_at:
        out = work / f"relay-processes-{n}.json"
        cmd = [python, "bench/relay.py", "--streams", str(n), "--layer", "redis", "--db", "postgres",
               "--processes", "2", "--deadline-s", str(args.deadline_s), "--out", str(out)]
        report["runs"].append(run_json(cmd, out, timeout=args.deadline_s * 2 + 240))
        save(report, results_dir)
    for chars in args.linearity:
        out = work / f"linearity-{chars}.json"
        cmd = [python, "bench/relay.py", "--streams", "10", "--layer", "memory", "--db", args.db,
               "--reply-chars", str(chars), "--deadline-s", str(max(args.deadline_s, chars / 4 * 0.02 * 3 + 10)),
               "--out", str(out)]
        report["linearity"].append(run_json(cmd, out, timeout=600))
        save(report, results_dir)
    if not args.no_soak:
        for layer in args.layers:
            out = work / f"soak-{layer}.json"
            cmd = [python, "bench/soak.py", "--cycles", "1000", "--answers", "200", "--rounds", "4", "--layer", layer,
                   "--db", args.db, "--out", str(out)]
            report["soak"][layer] = run_json(cmd, out, timeout=600)
            save(report, results_dir)
    report["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    path = save(report, results_dir)
    try:
        from bench.plot import plot

        print(f"plot: {plot(path)}", file=sys.stderr)
    except ImportError as exc:
        print(f"no plot ({exc}): pip install -r bench/requirements.txt", file=sys.stderr)
    print(f"results: {path}\ntables: .venv/bin/python bench/report.py {path}", file=sys.stderr)
    return 0


def save(report: dict, results_dir: Path) -> Path:
    """The sweep's JSON, kept in git: no path of this machine in it (temporary
    files, profiles, the site's log with its tracebacks' paths)."""
    path = results_dir / f"{report['name']}.json"
    slim = json.loads(json.dumps(report))
    for run in slim["runs"] + slim["linearity"] + list(slim["soak"].values()):
        if not isinstance(run, dict):
            continue
        if not run.get("error"):
            run.pop("site_log", None)
        if isinstance(run.get("command"), str):
            run["command"] = _without_paths(run["command"])
        profile = (run.get("site") or {}).get("profile")
        if isinstance(profile, dict):
            profile.pop("raw", None)
            profile.pop("svg", None)
    path.write_text(json.dumps(slim, indent=1) + "\n")
    return path


def _without_paths(command: str) -> str:
    """The command with its --out and --py-spy files left out (they are temporary)."""
    words, kept = command.split(), []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in ("--out", "--py-spy"):
            skip = True
            continue
        kept.append(word)
    return " ".join(kept)


if __name__ == "__main__":
    sys.exit(main())
