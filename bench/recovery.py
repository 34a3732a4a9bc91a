"""How fast stop cancels the upstream, and how fast a reconnecting socket catches up.

    python bench/recovery.py [--rounds 20] [--redis-url redis://127.0.0.1:6379/14]

Starts the emulator and the site (one process on SQLite + the in-memory layer;
with --redis-url also two processes sharing Redis and a fresh PostgreSQL
database) and, per round:
- stop: an answer streams (4 chars every 20 ms); after 10 deltas a socket sends
  chat.stop; measured until the emulator's active_streams drops to 0 (the
  upstream request is cancelled) and until the socket gets `done`;
- catch-up: a second socket connects mid-answer and sends conversation.open;
  measured from the start of its connect until it has the snapshot, and until
  its first live delta after it.
Prints p50/p95/max in ms and writes JSON with --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.emulator import start_emulator  # noqa: E402
from tests.fixtures.site import Browser, SiteProcess, Socket, manage, site_env, sqlite_url  # noqa: E402

PASSWORD = "a-long-unusual-passphrase-42"


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1),
        "max": round(ordered[-1], 1),
    }


async def stop_round(sender_site, stopper_site, cookie, emulator) -> tuple[float, float]:
    emulator.next(reply="s" * 2000, chunk_chars=4, interval_ms=20)
    sender = await Socket.open(sender_site, cookie)
    await sender.send({"type": "chat.send", "conversation": None, "content": "stop me"})
    frames = await sender.recv_until(lambda f: isinstance(f, dict) and f["type"] == "delta" and f["seq"] >= 10)
    message_id = frames[-1]["message"]
    stopper = await Socket.open(stopper_site, cookie) if stopper_site is not sender_site else sender
    asked = time.perf_counter()
    await stopper.send({"type": "chat.stop", "message": message_id})
    cancelled = None
    while cancelled is None:
        if (await emulator.astats())["active_streams"] == 0:
            cancelled = (time.perf_counter() - asked) * 1000
        else:
            await asyncio.sleep(0.002)
    await sender.recv_until(lambda f: isinstance(f, dict) and f["type"] == "done")
    done = (time.perf_counter() - asked) * 1000
    await sender.close()
    if stopper is not sender:
        await stopper.close()
    return cancelled, done


async def catch_up_round(sender_site, watcher_site, cookie, emulator) -> tuple[float, float]:
    emulator.next(reply="c" * 1200, chunk_chars=4, interval_ms=20)
    sender = await Socket.open(sender_site, cookie)
    await sender.send({"type": "chat.send", "conversation": None, "content": "catch me"})
    frames = await sender.recv_until(lambda f: isinstance(f, dict) and f["type"] == "delta" and f["seq"] >= 20)
    conversation_id = frames[0]["conversation"]["id"]
    started = time.perf_counter()
    watcher = await Socket.open(watcher_site, cookie)
    await watcher.send({"type": "conversation.open", "conversation": conversation_id})
    seen = await watcher.recv_until(lambda f: isinstance(f, dict) and f["type"] == "snapshot")
    snapshot = (time.perf_counter() - started) * 1000
    await watcher.recv_until(lambda f: isinstance(f, dict) and f["type"] == "delta")
    live = (time.perf_counter() - started) * 1000
    await watcher.close()
    await sender.recv_until(lambda f: isinstance(f, dict) and f["type"] == "done")
    await sender.close()
    assert seen[0]["type"] == "history"
    return snapshot, live


async def measure(sites, cookie, emulator, rounds: int) -> dict:
    first, second = sites[0], sites[-1]
    stops, dones, snaps, lives = [], [], [], []
    for _ in range(rounds):
        cancelled, done = await stop_round(first, second, cookie, emulator)
        stops.append(cancelled)
        dones.append(done)
        snapshot, live = await catch_up_round(first, second, cookie, emulator)
        snaps.append(snapshot)
        lives.append(live)
    return {
        "stop_to_upstream_cancelled_ms": summary(stops),
        "stop_to_done_frame_ms": summary(dones),
        "reconnect_to_snapshot_ms": summary(snaps),
        "reconnect_to_first_live_delta_ms": summary(lives),
    }


def run(env: dict, processes: int, emulator, rounds: int) -> dict:
    manage("migrate", "--noinput", env=env)
    sites = [SiteProcess(env=env) for _ in range(processes)]
    try:
        person = Browser(sites[0])
        person.signup(f"r{secrets.token_hex(3)}", PASSWORD)
        cookie = person.cookie_header()
        person.close()
        return asyncio.run(measure(sites, cookie, emulator, rounds))
    finally:
        for site in sites:
            site.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    emulator = start_emulator()
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = site_env(database_url=sqlite_url(Path(tmp) / "r.sqlite3"), gptalk_url=emulator.url,
                           CHAT_MESSAGES_PER_MINUTE="1000")
            results["one process (SQLite, in-memory layer)"] = run(env, 1, emulator, args.rounds)
        if args.redis_url:
            import psycopg

            name = f"gptalk_recovery_{secrets.token_hex(3)}"
            admin = "postgresql://postgres@127.0.0.1:5432/postgres"
            with psycopg.connect(admin, autocommit=True) as db:
                db.execute(f'CREATE DATABASE "{name}"')
            try:
                env = site_env(database_url=f"postgres://postgres@127.0.0.1:5432/{name}",
                               gptalk_url=emulator.url, REDIS_URL=args.redis_url,
                               CHAT_MESSAGES_PER_MINUTE="1000")
                results["two processes (PostgreSQL, Redis): stop and watch from the other"] = run(
                    env, 2, emulator, args.rounds
                )
            finally:
                with psycopg.connect(admin, autocommit=True) as db:
                    db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        emulator.stop()
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
