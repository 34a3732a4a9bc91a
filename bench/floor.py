"""The floor of the send side: what daphne costs per websocket frame with no site behind it.

    .venv/bin/python bench/floor.py                  # 100 sockets x 150 frames, three servers
    .venv/bin/python bench/floor.py --sockets 200 --repeat 3

A raw ASGI app under daphne (in its own process) accepts N websockets; when a
socket says "go" it sends 150 frames of "abcd", 20 ms apart, as an answer's
deltas come. All N say "go" at once. Printed: the server process's CPU
(user + sys, /proc) per frame sent, for daphne on asyncio's loop, on uvloop,
on uvloop with `chat.transport` installed as `manage.py serve` runs it, and
with the frames written by `chat.transport.text_frame_writer` as the site's
hub writes them.
With `bench/gptalk_client.py` (the upstream read alone) it gives, on the
machine at hand, what the parts of a relayed delta cost by themselves, to
set beside the site's CPU per delta from `bench/relay.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVERS = {
    "asyncio": ["--loop", "asyncio"],
    "uvloop": ["--loop", "uvloop"],
    "uvloop+transport": ["--loop", "uvloop", "--transport"],
    "+frame writer": ["--loop", "uvloop", "--transport", "--writer"],
}


async def app(scope, receive, send):
    """Accept; on "go", send `frames` frames of "abcd" at `interval` seconds; then close."""
    if scope["type"] != "websocket":
        return
    frames, interval = app.frames, app.interval  # type: ignore[attr-defined]
    write = app.writer(send) if app.writer else None  # type: ignore[attr-defined]
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            for _ in range(frames):
                if write is None or not write([b"abcd"]):
                    await send({"type": "websocket.send", "text": "abcd"})
                await asyncio.sleep(interval)
            await send({"type": "websocket.close"})
        elif message["type"] == "websocket.disconnect":
            return


def serve(args: argparse.Namespace) -> None:
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.server import Server

    app.writer = None  # type: ignore[attr-defined]
    if args.transport:
        sys.path.insert(0, str(REPO_ROOT))
        from chat import transport

        transport.install()
        if args.writer:
            app.writer = transport.text_frame_writer  # type: ignore[attr-defined]
    app.frames, app.interval = args.frames, args.interval_ms / 1000  # type: ignore[attr-defined]
    Server(application=app, endpoints=[f"tcp:port={args.port}:interface=127.0.0.1"], signal_handlers=True).run()


async def one_run(port: int, pid: int, sockets: int, frames: int) -> float:
    import websockets

    from bench.common import cpu_seconds

    connections = [await websockets.connect(f"ws://127.0.0.1:{port}/", max_queue=None) for _ in range(sockets)]
    await asyncio.sleep(0.5)
    before = cpu_seconds(pid)

    async def read(ws) -> int:
        await ws.send("go")
        count = 0
        try:
            async for _ in ws:
                count += 1
        except websockets.ConnectionClosed:
            pass
        return count

    counts = await asyncio.gather(*(read(ws) for ws in connections))
    spent = cpu_seconds(pid) - before
    if sum(counts) != sockets * frames:
        raise SystemExit(f"only {sum(counts)} of {sockets * frames} frames arrived")
    return spent / sum(counts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--interval-ms", type=float, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], help=argparse.SUPPRESS)
    parser.add_argument("--transport", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    # The measuring side only: the served process stays free of the harness.
    sys.path.insert(0, str(REPO_ROOT))
    from bench.common import free_port, terminate
    print(f"{args.sockets} sockets x {args.frames} frames of 'abcd', {args.interval_ms:g} ms apart")
    print(f"{'server':18s} {'CPU µs per frame (each run)':>30s}   median")
    for name, extra in SERVERS.items():
        port = free_port()
        command = [sys.executable, __file__, "--serve", "--port", str(port), "--frames", str(args.frames),
                   "--interval-ms", str(args.interval_ms), *extra]  # fmt: skip
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit(f"the {name} server did not start") from None
                    time.sleep(0.1)
            runs = [asyncio.run(one_run(port, server.pid, args.sockets, args.frames)) for _ in range(args.repeat)]
        finally:
            terminate(server)
        print(f"{name:18s} {' '.join(f'{r:6.1f}' for r in runs):>30s}   {statistics.median(runs):6.1f}")


if __name__ == "__main__":
    main()
