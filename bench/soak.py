"""Connect/disconnect soak: does the site give back what a socket took?

    .venv/bin/python bench/soak.py --cycles 1000 --parallel 20 [--layer redis] [--answers 200]

Starts the emulator and the site under daphne (as bench/relay.py does), warms
up with --warmup cycles, reads the daphne process's RSS, then runs --cycles
connect/disconnect cycles (a real websocket each: handshake with the session
cookie, accepted, closed), --parallel at a time, and reads RSS again after the
site has been idle for --settle-s seconds. With --answers M, M more cycles each
send a short chat.send and close the socket as soon as `done` arrives (the
generation lifecycle), measured the same way.

Prints one JSON object: RSS before/after per part, growth in KiB and percent,
and the target (growth within 5%).

What grows (a diagnosis, not a measurement: the probes themselves move RSS):

    .venv/bin/python bench/soak.py --probe /tmp/probe --tracemalloc 25 [--site-env MALLOC_ARENA_MAX=2]
    .venv/bin/python bench/memdiff.py /tmp/probe 1 5

--probe DIR loads bench/memprobe/sitecustomize.py into the daphne process and
signals it after the warm-up and after every round (SIGUSR1; SIGUSR2 with
--probe-trim, which calls malloc_trim first): gc counts by type, channel-layer
sizes, asyncio tasks and, with --tracemalloc N, a tracemalloc snapshot of N
frames, all in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Stack, machine_info, rss_kb, users_login  # noqa: E402

GROWTH_TARGET_PCT = 5.0


async def cycle(site, cookie: str, *, answer: bool) -> None:
    import websockets

    async with websockets.connect(
        site.ws_url, additional_headers={"Cookie": cookie, "Origin": site.url},
        open_timeout=30, ping_interval=None, compression=None,
    ) as socket:
        if answer:
            await socket.send(json.dumps({"type": "chat.send", "conversation": None, "content": "soak"}))
            async with asyncio.timeout(60):
                while json.loads(await socket.recv()).get("type") != "done":
                    pass


async def cycles(site, cookies: list[str], count: int, parallel: int, *, answer: bool) -> dict:
    gate = asyncio.Semaphore(parallel)
    failures: list[str] = []

    async def one(i: int) -> None:
        async with gate:
            try:
                await cycle(site, cookies[i % len(cookies)], answer=answer)
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append(f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    return {"cycles": count, "failures": len(failures), "failure_samples": failures[:5],
            "seconds": round(time.monotonic() - started, 2)}


def measure(pid: int, settle_s: float) -> int:
    time.sleep(settle_s)
    return rss_kb(pid)


class Probe:
    """Signals bench/memprobe/sitecustomize.py in the site process and waits for its report."""

    def __init__(self, pid: int, directory: Path, *, trim: bool) -> None:
        self.pid, self.directory, self.trim, self.count = pid, directory, trim, 0
        self.reports: list[dict] = []

    def __call__(self, label: str) -> dict:
        self.count += 1
        path = self.directory / f"probe-{self.count}.json"
        os.kill(self.pid, signal.SIGUSR2 if self.trim else signal.SIGUSR1)
        deadline = time.monotonic() + 300
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no probe report {path}")
            time.sleep(0.2)
        report = json.loads(path.read_text())
        summary = {"label": label, "n": self.count, "rss_kb": report["rss_kb_before_collect"],
                   "rss_kb_after_trim": report.get("rss_kb_after_trim"),
                   "gc_objects": report["gc_objects"], "tasks_pending": report.get("tasks_pending"),
                   "layers": report.get("layers"), "traced_kb": report.get("traced_kb")}
        self.reports.append(summary)
        print(json.dumps(summary), file=sys.stderr)
        return summary


def part(site, cookies, pid, *, count, parallel, settle_s, answer, rounds=1, probe=None) -> dict:
    """`count` cycles in `rounds` equal rounds, RSS after each: steady growth per round is a leak."""
    before = rss_kb(pid)
    per_round, runs = [], []
    for r in range(rounds):
        share = count // rounds + (1 if r < count % rounds else 0)
        runs.append(asyncio.run(cycles(site, cookies, share, parallel, answer=answer)))
        per_round.append(measure(pid, settle_s))
        if probe is not None:
            probe(f"{'answers' if answer else 'connect_disconnect'} round {r + 1}")
    after = per_round[-1]
    run = {
        "cycles": count,
        "failures": sum(x["failures"] for x in runs),
        "failure_samples": [f for x in runs for f in x["failure_samples"]][:5],
        "seconds": round(sum(x["seconds"] for x in runs), 2),
        "rss_kb_after_each_round": per_round,
    }
    return {
        **run,
        "rss_kb_before": before,
        "rss_kb_after": after,
        "growth_kb": after - before,
        "growth_pct": round(100 * (after - before) / before, 2),
        "bytes_per_cycle": round((after - before) * 1024 / max(1, count), 1),
        # growth over the second half of the rounds: a leak keeps growing, a cache or the
        # allocator's high-water mark levels off
        "growth_pct_second_half": round(
            100 * (after - per_round[len(per_round) // 2 - 1]) / per_round[len(per_round) // 2 - 1], 2
        ) if len(per_round) >= 2 else None,
        "target_pct": GROWTH_TARGET_PCT,
        "met": 100 * (after - before) / before <= GROWTH_TARGET_PCT,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--answers", type=int, default=0, help="cycles that also stream a short answer")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--layer", choices=("memory", "redis"), default="memory")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--settle-s", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=4, help="measure RSS after each of this many rounds")
    parser.add_argument("--out", default="")
    parser.add_argument("--probe", default="", metavar="DIR",
                        help="memory probes of the site process into DIR (see above)")
    parser.add_argument("--probe-trim", action="store_true", help="malloc_trim(0) before each probe")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="with --probe: run the site with PYTHONTRACEMALLOC=FRAMES")
    parser.add_argument("--site-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the site process (e.g. MALLOC_ARENA_MAX=2)")
    args = parser.parse_args(argv)
    site_env = dict(item.split("=", 1) for item in args.site_env)
    if args.probe:
        Path(args.probe).mkdir(parents=True, exist_ok=True)
        site_env["BENCH_TRACEMALLOC_DIR"] = str(Path(args.probe).resolve())
        site_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parent / "memprobe"), os.environ.get("PYTHONPATH")])
        )
        if args.tracemalloc:
            site_env["PYTHONTRACEMALLOC"] = str(args.tracemalloc)
            # Tracing every allocation of Django's start-up takes ~40 s on the bench machine.
            import tests.fixtures.site

            tests.fixtures.site.START_TIMEOUT = max(tests.fixtures.site.START_TIMEOUT, 300.0)

    # Short answers: 40 characters, 8 per event, 5 ms apart.
    stack = Stack(db=args.db, layer=args.layer, redis_url=args.redis_url, interval_ms=5, chunk_chars=8)
    result: dict = {"config": vars(args), "machine": machine_info(),
                    "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        stack.start()
        site = stack.start_site(**site_env)
        pid = site.process.pid
        probe = Probe(pid, Path(args.probe), trim=args.probe_trim) if args.probe else None
        cookies = users_login(stack, users=args.users, form_logins=2)
        warm = asyncio.run(cycles(site, cookies, args.warmup, args.parallel, answer=False))
        if args.answers:
            asyncio.run(cycles(site, cookies, min(20, args.answers), args.parallel, answer=True))
        result["warmup"] = warm
        time.sleep(args.settle_s)
        if probe is not None:
            probe("after warm-up")
        result["connect_disconnect"] = part(site, cookies, pid, count=args.cycles, parallel=args.parallel,
                                            settle_s=args.settle_s, answer=False, rounds=args.rounds,
                                            probe=probe)
        if args.answers:
            result["with_answers"] = part(site, cookies, pid, count=args.answers, parallel=args.parallel,
                                          settle_s=args.settle_s, answer=True, rounds=args.rounds,
                                          probe=probe)
        result["rss_kb_final"] = rss_kb(pid)
        if probe is not None:
            result["probes"] = probe.reports
            (Path(args.probe) / "site.log").write_text(site.output())
    finally:
        with contextlib.suppress(Exception):
            stack.close()
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
