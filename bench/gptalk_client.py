"""Cost of the GPTalk client per delta, for each transport (GPTALK_TRANSPORT).

Starts an emulator (`manage.py gptalk_emulator --interval-ms 20 --chunk-chars 4`)
unless --url is given, then for each transport and each concurrency runs that many
GPTalk.create_async_generator calls at once (after one warm-up call) and prints:
wall time, time to first delta (p50/p99), and the client process's CPU time per
delta (user+sys, so it includes the event loop and the transport).

    .venv/bin/python bench/gptalk_client.py                      # 1, 50, 200 calls
    .venv/bin/python bench/gptalk_client.py --concurrency 100 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from chat.upstream.gptalk import GPTalk, aclose_clients  # noqa: E402

MESSAGES = [{"role": "user", "content": "Benchmark"}]
ROW = (
    "{transport:9} {calls:5} {wall_s:7.2f} {first_delta_p50_ms:10.1f} "
    "{first_delta_p99_ms:10.1f} {deltas:7} {cpu_us_per_delta:12.1f}"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emulator_start(interval_ms: int, chunk_chars: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "gptalk_emulator", "--port", str(port),
         "--interval-ms", str(interval_ms), "--chunk-chars", str(chunk_chars)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/_emulator/health", trust_env=False, timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the emulator did not start")


async def one_call(url: str, transport: str, started: float) -> tuple[float, int, int]:
    """(seconds to the first delta, deltas, characters) of one reply."""
    first = None
    deltas = chars = 0
    generator = GPTalk.create_async_generator(
        messages=MESSAGES, base_url=url, transport=transport
    )
    async for delta in generator:
        if first is None:
            first = time.perf_counter() - started
        deltas += 1
        chars += len(delta)
    return first or 0.0, deltas, chars


async def scenario(url: str, transport: str, calls: int, reply: str) -> dict:
    async with httpx.AsyncClient(trust_env=False) as control:
        for _ in range(calls + 1):  # +1: the warm-up call
            await control.post(url + "/_emulator/next", json={"reply": reply})
    await one_call(url, transport, time.perf_counter())  # login, first connection
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(one_call(url, transport, t0) for _ in range(calls)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await aclose_clients()
    firsts = sorted(r[0] for r in results)
    deltas = sum(r[1] for r in results)
    assert all(r[2] == len(reply) for r in results), "a reply came back incomplete"
    return {
        "transport": transport,
        "calls": calls,
        "wall_s": round(wall, 2),
        "first_delta_p50_ms": round(statistics.median(firsts) * 1000, 1),
        "first_delta_p99_ms": round(firsts[int((len(firsts) - 1) * 0.99)] * 1000, 1),
        "deltas": deltas,
        "cpu_us_per_delta": round(cpu / deltas * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running emulator (default: start one)")
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--chunk-chars", type=int, default=4)
    parser.add_argument("--reply-chars", type=int, default=600)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--transports", nargs="+", default=["aiohttp", "httpx"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="as `manage.py serve --loop`")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)  # a plain script: env settings only

    process, url = None, args.url
    if not url:
        process, url = emulator_start(args.interval_ms, args.chunk_chars)
    reply = ("Benchmark reply. " * (args.reply_chars // 17 + 1))[: args.reply_chars]
    ideal = -(-args.reply_chars // args.chunk_chars) * args.interval_ms / 1000
    try:
        if not args.json:
            print(f"reply {args.reply_chars} chars, {args.chunk_chars}/event, "
                  f"{args.interval_ms} ms apart: ideal wall {ideal:.2f} s")  # fmt: skip
            print(f"{'transport':9} {'calls':>5} {'wall s':>7} {'1st p50 ms':>10} "
                  f"{'1st p99 ms':>10} {'deltas':>7} {'CPU us/delta':>12}")  # fmt: skip
        for calls in args.concurrency:
            for _ in range(args.repeat):
                for transport in args.transports:
                    GPTalk._auth, GPTalk.used_times = None, 0
                    row = asyncio.run(scenario(url, transport, calls, reply))
                    if args.json:
                        print(json.dumps(row), flush=True)
                    else:
                        print(ROW.format(**row), flush=True)
    finally:
        if process is not None:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
