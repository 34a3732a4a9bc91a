"""Relay benchmark: how much delay and cost the site adds between the model and people.

    .venv/bin/python bench/relay.py --streams 200 --layer memory --db sqlite

One run starts the GPTalk emulator (bench/emulator.py: the stock emulator plus a
log of when it sent each event) and the site under daphne as real processes on
loopback, then:

1. reference: N answers read straight from the emulator by a plain aiohttp
   client (login, text, stream; one ClientSession, no connection limit) -- the
   zero-overhead reference;
2. site: N websockets (the `websockets` library, Origin + session Cookie, the
   permessage-deflate offer a browser makes), each sends one `chat.send` and
   reads the streamed answer until `done`.

Both phases use the same N, pacing (--interval-ms, --chunk-chars), reply length
and start ramp (N starts spread evenly over --ramp-s seconds). Receive times are
taken when the bytes reach the client process (asyncio data_received), not when
the client's own tasks get round to them, so a busy client inflates neither.

Relay latency, per upstream event: the receive time of the first websocket frame
by which the client holds that event's text, minus the `ts` the emulator stamped
on the event (the emulator's log, matched to the answer by its final text). A
coalesced frame counts its wait against every event in it.

The JSON result (stdout, or --out) holds every figure for the site and the
reference, their ratios, and the targets (TARGETS below; docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO_ROOT,
    Stack,
    count_delta,
    cpu_seconds,
    cpu_seconds_all,
    rss_kb_all,
    site_pids,
    thread_cpu_seconds_all,
    machine_info,
    cpu_pressure,
    loadavg,
    machine_busy_seconds,
    self_cpu_seconds,
    users_login,
    write_log_counts,
)

# What "the relay adds nothing measurable" means, per process at 100 streams
# (docs/performance.md): each figure against the reference read in the same run.
from bench.relay_measure import (  # noqa: E402
    compare,
    make_reply,
    sample_process,
    start_py_spy,
)
from bench.relay_reference import _FEEDS, reference_phase, reference_summary  # noqa: E402
from bench.relay_site import (  # noqa: E402
    close_sockets,
    open_sockets,
    site_answer,
    site_streams,
    site_summary,
    ws_url_of,
)

# --- one run -------------------------------------------------------------------------

async def emulator_queue(url: str, replies: list[str]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client:
        for start in range(0, len(replies), 50):
            await asyncio.gather(*(client.post("/_emulator/next", json={"reply": r})
                                   for r in replies[start:start + 50]))
        queued = (await client.get("/_emulator/stats")).json()["queued"]
        if queued < len(replies):
            raise RuntimeError(f"the emulator queued {queued} of {len(replies)} replies")


async def emulator_log(url: str, *, reset: bool = False) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as client:
        if reset:
            (await client.post("/_bench/log/reset")).raise_for_status()
            return {}
        streams = (await client.get("/_bench/log")).json()["streams"]
    return {s["key"]: s for s in streams}


def run(args: argparse.Namespace) -> dict:
    extra_env = dict(item.split("=", 1) for item in args.env)
    stack = Stack(db=args.db, layer=args.layer, redis_url=args.redis_url, debug=args.debug,
                  interval_ms=args.interval_ms, chunk_chars=args.chunk_chars, extra_env=extra_env)
    n = args.streams
    users = args.users or n
    started = dt.datetime.now(dt.timezone.utc)
    result: dict = {
        "config": {
            "streams": n, "layer": args.layer, "db": args.db, "reply_chars": args.reply_chars,
            "interval_ms": args.interval_ms, "chunk_chars": args.chunk_chars, "ramp_s": args.ramp_s,
            "users": users, "form_logins": min(args.form_logins, users), "debug": args.debug,
            "deadline_s": args.deadline_s, "protocol": args.protocol, "env": args.env,
            "processes": args.processes, "loop": args.loop,
        },
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_state(),
    }
    timeout = args.deadline_s
    try:
        stack.start()
        site = stack.start_site(args=("--processes", str(args.processes), "--loop", args.loop))
        pids = site_pids(site)
        t = time.time()
        cookies = users_login(stack, users=users, form_logins=args.form_logins)
        result["setup"] = {"login_s": round(time.time() - t, 2), "site_pids": pids}

        # 1. the reference
        if not args.skip_reference:
            stack.emulator.reset()
            asyncio.run(emulator_queue(stack.emulator.url, [make_reply("ref", i, args.reply_chars) for i in range(n)]))
            load = loadavg()
            emu0, me0, all0 = cpu_seconds(stack.emulator.process.pid), self_cpu_seconds(), machine_busy_seconds()
            site0 = cpu_seconds_all(pids)
            results, t0, t1 = asyncio.run(reference_phase(stack.emulator.url, n=n, ramp_s=args.ramp_s,
                                                          timeout=timeout))
            ref = reference_summary(results, args.reply_chars)
            ref["emulator_cpu_s"] = round(cpu_seconds(stack.emulator.process.pid) - emu0, 2)
            ref["client_cpu_s"] = round(self_cpu_seconds() - me0, 2)
            ours = ref["emulator_cpu_s"] + ref["client_cpu_s"] + cpu_seconds_all(pids) - site0
            ref["load_before"] = load
            ref["cpu_pressure_avg10"] = cpu_pressure()
            ref["outside_busy_cores"] = round((machine_busy_seconds() - all0 - ours) / (t1 - t0), 2)
            result["reference"] = ref
            _FEEDS.clear()
        result["site"] = asyncio.run(site_phase(stack, cookies, args))
        stack.stop_site()
        writes = result["site"].pop("_writes")
        site_res = result["site"]
        answers = max(1, site_res["answers"])
        total_writes = sum(writes.values())
        assistant = sum(v for k, v in writes.items() if k.endswith(".assistant"))
        finished = site_res["complete"] == site_res["answers"]
        stream_s = site_res.get("mean_streaming_s") or 0
        site_res["db_writes"] = {
            "breakdown": writes,
            "per_answer": round(total_writes / answers, 2),
            "assistant_message_per_answer": round(assistant / answers, 2),
            # 2 + one per second of streaming; undefined while answers are still streaming
            "target_per_answer": round(2 + stream_s, 2) if finished else None,
            "mean_streaming_s": stream_s if finished else None,
        }
        result["site_log"] = site_log(site.output())
    finally:
        stack.close()
    result["ratios"], result["targets"] = compare(result)
    result["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return result


async def site_phase(stack: Stack, cookies: list[str], args) -> dict:
    site = stack.site
    pids = site_pids(site)
    n = args.streams
    # Warm-up: full answers, so lazy imports, pools and caches are not counted.
    # Several sockets at once, so that every process (they share one listening
    # socket: the kernel picks) most likely serves one.
    ws_url = ws_url_of(site, args.protocol)
    warm_n = args.warm or (1 if args.processes == 1 else 4 * args.processes)
    warm = await open_sockets(ws_url, site.url, cookies[:warm_n], warm_n)
    await emulator_queue(stack.emulator.url, ["Warm-up answer. " * 8] * warm_n)
    warm_results = await asyncio.gather(*(site_answer(conn, f"warm up {i}", time.time(), time.time() + 60)
                                          for i, conn in enumerate(warm)))
    await close_sockets(warm)
    for warm_result in warm_results:
        if not warm_result["ok"]:
            raise RuntimeError(f"the warm-up answer failed: {warm_result['error']}\n{site.output()[-3000:]}")
    await asyncio.sleep(0.5)

    writes_before = write_log_counts(args.db, stack.database_url)
    rss_start = rss_kb_all(pids)
    t = time.time()
    conns = await open_sockets(ws_url, site.url, cookies, n)
    connect_s = time.time() - t
    extensions = conns[0].response.headers.get("Sec-WebSocket-Extensions")
    await asyncio.sleep(1.0)
    rss_idle = rss_kb_all(pids)

    await emulator_log(stack.emulator.url, reset=True)
    await emulator_queue(stack.emulator.url, [make_reply("site", i, args.reply_chars) for i in range(n)])
    profiles = []
    if args.py_spy:
        base = Path(args.py_spy)
        base.parent.mkdir(parents=True, exist_ok=True)
        duration = max(1, int(min(args.py_spy_s, args.deadline_s)))
        delay = args.py_spy_delay_s
        profiles = [start_py_spy(site.process.pid, base.with_suffix(".txt"), duration, "raw", delay, args.py_spy_rate, args.py_spy_gil),
                    start_py_spy(site.process.pid, base.with_suffix(".svg"), duration, "flamegraph", delay, args.py_spy_rate,
                                args.py_spy_gil)]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_process(pids, stop))
    threads0 = thread_cpu_seconds_all(pids)
    load, all0 = loadavg(), machine_busy_seconds()
    cpu0, emu0, me0 = cpu_seconds_all(pids), cpu_seconds(stack.emulator.process.pid), self_cpu_seconds()
    results, t0, t1 = await site_streams(conns, ramp_s=args.ramp_s, deadline_s=args.deadline_s,
                                         prompt_tag=args.tag)
    writes_after = write_log_counts(args.db, stack.database_url)
    cpu1, emu1, me1 = cpu_seconds_all(pids), cpu_seconds(stack.emulator.process.pid), self_cpu_seconds()
    all1 = machine_busy_seconds()
    threads1 = thread_cpu_seconds_all(pids)
    stop.set()
    sampled = await sampler
    rss_after = rss_kb_all(pids)
    log = await emulator_log(stack.emulator.url)
    await close_sockets(conns)
    await asyncio.sleep(1.0)
    rss_closed = rss_kb_all(pids)
    for p in profiles:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()

    summary = site_summary(results, log, args.reply_chars, phase_end=t1)
    wall = t1 - t0
    summary.update({
        "ws_extensions": extensions,
        "connect_s": round(connect_s, 2),
        "fragmented_frames": sum(r["fragmented"] for r in results),
        "server": {
            "rss_kb_start": rss_start,
            "rss_kb_idle": rss_idle,
            "rss_kb_per_idle_socket": round((rss_idle - rss_start) / n, 1),
            "rss_kb_peak": max(sampled["rss_kb_peak"], rss_after),
            "rss_kb_after": rss_after,
            "rss_kb_closed": rss_closed,
            "cpu_s": round(cpu1 - cpu0, 2),
            "cpu_cores": round((cpu1 - cpu0) / wall, 3),
            "cpu_s_by_thread": {k: round(v - threads0.get(k, 0.0), 2) for k, v in sorted(threads1.items())
                                if v - threads0.get(k, 0.0) >= 0.01},
        },
        "emulator_cpu_s": round(emu1 - emu0, 2),
        "client_cpu_s": round(me1 - me0, 2),
        "phase_s": round(wall, 2),
        "load_before": load,
        "cpu_pressure_avg10": cpu_pressure(),
        # CPU used by processes outside this run (other work on the machine), in cores
        "outside_busy_cores": round((all1 - all0 - (cpu1 - cpu0) - (emu1 - emu0) - (me1 - me0)) / wall, 2),
        "_writes": count_delta(writes_after, writes_before),
    })
    if profiles:
        from bench.profile_summary import summarise

        raw = Path(args.py_spy).with_suffix(".txt")
        summary["profile"] = {"raw": str(raw), "svg": str(Path(args.py_spy).with_suffix(".svg")),
                              "duration_s": duration,
                              "summary": summarise(raw, top=20, duration=duration) if raw.exists() else None}
    return summary


ACCESS_LINE = re.compile(r"^\S+:\d+ - - \[")


def site_log(output: str, limit: int = 4000) -> str:
    """The site's output without daphne's access log lines (errors, warnings)."""
    lines = [line for line in output.splitlines() if not ACCESS_LINE.match(line)]
    return "\n".join(lines)[-limit:]


def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines()
             if line[3:].startswith(("chat/", "gptalk_site/", "requirements"))]
    return {"commit": git("rev-parse", "--short", "HEAD"), "app_files_changed": dirty}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", "-n", type=int, default=50, help="concurrent answers (N)")
    parser.add_argument("--layer", choices=("memory", "redis"), default="memory")
    parser.add_argument("--processes", type=int, default=1, help="daphne processes (serve --processes; >1 needs --layer redis)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the site's event loop (serve --loop)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="the Redis database of the bench (its asgi* keys are deleted)")
    parser.add_argument("--protocol", type=int, choices=(1, 2), default=2,
                        help="websocket protocol version (2: /ws/chat/?v=2, what the browser UI uses)")
    parser.add_argument("--reply-chars", type=int, default=600)
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--chunk-chars", type=int, default=4)
    parser.add_argument("--ramp-s", type=float, default=0.0,
                        help="spread the N starts over this many seconds (0: all at once, as people pressing Send together)")
    parser.add_argument("--users", type=int, default=0, help="distinct users (default: one per socket)")
    parser.add_argument("--form-logins", type=int, default=2,
                        help="users that log in through the login form; the rest get minted sessions")
    parser.add_argument("--deadline-s", type=float, default=120,
                        help="each phase ends this many seconds after its first start; answers not done by "
                             "then count as incomplete and their missing events as censored latencies")
    parser.add_argument("--warm", type=int, default=0,
                        help="warm-up answers before the streams (default: 1, or 4 per process with --processes)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--debug", action="store_true", help="run the site with DJANGO_DEBUG=true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment of the site (e.g. CHAT_SAVE_INTERVAL=3600); repeatable")
    parser.add_argument("--py-spy", default="", help="profile the site during the streams: PATH.txt (raw) + PATH.svg")
    parser.add_argument("--py-spy-gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument("--py-spy-rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--py-spy-s", type=float, default=20, help="seconds of profile from the first start")
    parser.add_argument("--py-spy-delay-s", type=float, default=0,
                        help="start the profile this many seconds after the first start (steady state)")
    parser.add_argument("--tag", default="", help="free text put into the prompts")
    parser.add_argument("--out", default="", help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    args.tag = args.tag or f"{os.getpid()}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(brief(result), file=sys.stderr)
    else:
        print(text)
    return 0


def brief(result: dict) -> str:
    c, s, r = result["config"], result.get("site") or {}, result.get("reference") or {}
    lat, rlat = s.get("latency_ms") or {}, r.get("latency_ms") or {}
    return (f"N={c['streams']} {c['layer']}/{c['db']}: site p50/p99 {lat.get('p50')}/{lat.get('p99')} ms "
            f"(ref {rlat.get('p50')}/{rlat.get('p99')}), ttfd p50 {(s.get('ttfd_ms') or {}).get('p50')} ms "
            f"(ref {(r.get('ttfd_ms') or {}).get('p50')}; upstream's first event "
            f"{(s.get('upstream_first_event_ms') or {}).get('p50')}), chars/s ratio {result['ratios'].get('throughput.chars_per_s')}, "
            f"bytes/char {s.get('bytes_per_char')}, complete {s.get('complete')}/{s.get('answers')}, "
            f"cpu {(s.get('server') or {}).get('cpu_cores')} cores")


if __name__ == "__main__":
    sys.exit(main())
