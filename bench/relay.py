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
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shlex
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
TARGETS = {
    "p99_over_reference_ms": 25.0,
    "ttfd_p50_over_reference_ms": 50.0,
    "throughput_ratio": 0.95,
    "cpu_us_per_delta": 80.0,
    "bytes_per_char": 3.0,
    "rss_kb_per_idle_socket": 100.0,
}


# --- numbers -------------------------------------------------------------------

def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        # nearest rank
        index = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        return round(ordered[index], 3)

    return {
        "n": len(ordered),
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": round(ordered[-1], 3),
        "mean": round(sum(ordered) / len(ordered), 3),
    }


def ratio(site, reference):
    if site is None or reference in (None, 0):
        return None
    return round(site / reference, 3)


def make_reply(tag: str, index: int, chars: int) -> str:
    """A unique, Markdown-ish reply of exactly `chars` characters (some non-ASCII)."""
    from chat.emulator.replies import default_reply

    text = f"[{tag}-{index:05d}] "
    body = default_reply(f"bench {tag} {index}")
    while len(text) < chars:
        text += body
    return text[:chars]


def reply_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def ws_frame_bytes(payload_len: int) -> int:
    """Bytes on the wire of an unmasked server frame with this payload length."""
    if payload_len < 126:
        return payload_len + 2
    if payload_len < 65536:
        return payload_len + 4
    return payload_len + 10


# --- the reference: aiohttp straight to the emulator -----------------------------

_ARRIVAL = [0.0]
_FEEDS: dict[int, list] = {}
_AIOHTTP_PATCHED = False


def _patch_aiohttp() -> None:
    """Stamp the arrival time of every body chunk a response reader is fed.

    ResponseHandler.data_received runs the HTTP parser synchronously, which feeds
    the body to the response's StreamReader: the time taken at the top of
    data_received is the arrival time of the bytes fed during that call.
    """
    global _AIOHTTP_PATCHED
    if _AIOHTTP_PATCHED:
        return
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.streams import StreamReader

    original_received = ResponseHandler.data_received
    original_feed = StreamReader.feed_data

    def data_received(self, data):
        _ARRIVAL[0] = time.time()
        return original_received(self, data)

    def feed_data(self, data, *args, **kwargs):
        record = _FEEDS.get(id(self))
        if record is None:
            record = _FEEDS[id(self)] = [[], 0]
        record[1] += len(data)
        record[0].append((_ARRIVAL[0], record[1]))
        return original_feed(self, data, *args, **kwargs)

    ResponseHandler.data_received = data_received
    StreamReader.feed_data = feed_data
    _AIOHTTP_PATCHED = True


GPTALK_HEADERS = {"content-type": "application/json", "accept": "*/*"}


async def reference_answer(session, base: str, prompt: str, start_at: float, timeout: float) -> dict:
    import secrets

    await asyncio.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    out = {"started": started, "events": [], "ok": False, "error": None, "bytes": 0}
    try:
        async with asyncio.timeout(timeout):
            async with session.post(base + "/api/chatgpt/user/login", headers=GPTALK_HEADERS,
                                    json={"fingerprint": secrets.token_hex(16), "platform": "fingerprint"}) as r:
                token = (await r.json())["data"]["token"]
                _FEEDS.pop(id(r.content), None)
            body = {"content": prompt, "accept": "stream", "from": 1, "model": "gpt-3.5-turbo",
                    "is_mobile": 0, "user_agent": "bench", "is_open_ctx": 0, "prompt": "", "roid": 111,
                    "temperature": 0, "ctx_msg_count": 3, "created_at": int(started)}
            async with session.post(base + "/api/chatgpt/chatapi/text", json=body,
                                    headers={**GPTALK_HEADERS, "authorization": f"Bearer {token}"}) as r:
                stream_token = (await r.json())["data"]["token"]
                _FEEDS.pop(id(r.content), None)
            async with session.get(base + "/api/chatgpt/chatapi/stream",
                                   params={"token": stream_token}, headers=GPTALK_HEADERS) as r:
                r.raise_for_status()
                consumed, pointer = 0, 0
                content = ""
                try:
                    async for line in r.content:
                        consumed += len(line)
                        stamps = _FEEDS[id(r.content)][0]
                        while stamps[pointer][1] < consumed:
                            pointer += 1
                        arrived = stamps[pointer][0]
                        if line.startswith(b"data: [DONE]"):
                            out["ok"] = True
                            out["done_at"] = arrived
                            break
                        if not line.startswith(b"data: {"):
                            continue
                        event = json.loads(line[6:])
                        content = event["content"]
                        out["events"].append((arrived, event["ts"], len(content)))
                finally:
                    _FEEDS.pop(id(r.content), None)
                out["bytes"] = consumed
                out["content"] = content
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def reference_phase(base: str, *, n: int, ramp_s: float, timeout: float) -> tuple[list[dict], float, float]:
    import aiohttp

    _patch_aiohttp()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        t0 = time.time() + 0.3
        tasks = [
            reference_answer(session, base, f"bench reference {i}", t0 + ramp_s * i / n, timeout)
            for i in range(n)
        ]
        results = await asyncio.gather(*tasks)
    return results, t0, time.time()


def reference_summary(results: list[dict], reply_chars: int) -> dict:
    latencies, ttfd, errors = [], [], []
    events = chars = complete = total_bytes = 0
    firsts, lasts = [], []
    for r in results:
        if r["error"]:
            errors.append(r["error"])
        if r["events"]:
            ttfd.append((r["events"][0][0] - r["started"]) * 1000)
            firsts.append(r["started"])
        for arrived, ts, _length in r["events"]:
            latencies.append((arrived - ts) * 1000)
        events += len(r["events"])
        if r["ok"]:
            complete += 1
            chars += len(r.get("content", ""))
            total_bytes += r["bytes"]
            lasts.append(r["done_at"])
    wall = (max(lasts) - min(firsts)) if lasts and firsts else None
    return {
        "answers": len(results),
        "complete": complete,
        "content_ok": sum(1 for r in results if r["ok"] and len(r.get("content", "")) == reply_chars),
        "errors": errors[:10],
        "error_count": len(errors),
        "latency_ms": percentiles(latencies),
        "ttfd_ms": percentiles(ttfd),
        "events": events,
        "wall_s": round(wall, 3) if wall else None,
        "events_per_s": round(events / wall, 1) if wall else None,
        "chars_per_s": round(chars / wall, 1) if wall else None,
        "answers_per_s": round(complete / wall, 3) if wall else None,
        # The upstream protocol resends the cumulative text: quadratic, shown for scale.
        "bytes_per_char": round(total_bytes / chars, 2) if chars else None,
    }


# --- the site: websockets ------------------------------------------------------------

def _metered_connection_class():
    from websockets.asyncio.client import ClientConnection
    from websockets.frames import Frame, Opcode

    class MeteredConnection(ClientConnection):
        """Counts the bytes received and keeps text frames with their arrival time."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.rx_bytes = 0
            self.arrival = 0.0
            self.frames: list[tuple[float, bytes]] | None = None
            self.done: asyncio.Future | None = None
            self.rx_at_done = 0
            self.fragmented = 0

        def data_received(self, data: bytes) -> None:
            self.arrival = time.time()
            self.rx_bytes += len(data)
            super().data_received(data)

        def process_event(self, event) -> None:
            if self.frames is not None and isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                data = bytes(event.data)
                if not event.fin:
                    self.fragmented += 1
                self.frames.append((self.arrival, data))
                if b'"done"' in data and self.done is not None and not self.done.done():
                    with contextlib.suppress(ValueError):
                        frame = json.loads(data)
                        if isinstance(frame, dict) and frame.get("type") == "done":
                            self.rx_at_done = self.rx_bytes
                            self.done.set_result(self.arrival)
                return
            super().process_event(event)

    return MeteredConnection


def ws_url_of(site, protocol: int) -> str:
    return site.ws_url + ("?v=2" if protocol == 2 else "")


async def open_sockets(ws_url: str, origin: str, cookies: list[str], n: int, *, parallel: int = 50):
    from websockets.asyncio.client import connect

    metered = _metered_connection_class()
    gate = asyncio.Semaphore(parallel)
    loop = asyncio.get_running_loop()

    async def one(i: int):
        async with gate:
            conn = await connect(
                ws_url,
                additional_headers={"Cookie": cookies[i % len(cookies)], "Origin": origin},
                create_connection=metered,
                open_timeout=60,
                ping_interval=None,
                max_size=None,
                max_queue=None,
            )
            conn.frames = []
            conn.done = loop.create_future()
            conn.rx_after_handshake = conn.rx_bytes
            return conn

    return await asyncio.gather(*(one(i) for i in range(n)))


async def close_sockets(conns) -> None:
    async def one(conn):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 10)

    await asyncio.gather(*(one(c) for c in conns))


async def site_answer(conn, prompt: str, start_at: float, deadline: float) -> dict:
    """Send one chat.send at `start_at` and wait for `done` until the absolute `deadline`."""
    await asyncio.sleep(max(0.0, start_at - time.time()))
    conn.frames.clear()
    rx_before = conn.rx_bytes
    sent = time.time()
    out = {"sent": sent, "ok": False, "error": None}
    try:
        await conn.send(json.dumps({"type": "chat.send", "conversation": None, "content": prompt}))
        out["done_at"] = await asyncio.wait_for(asyncio.shield(conn.done), max(0.1, deadline - time.time()))
        out["ok"] = True
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["frames"] = list(conn.frames)
    out["rx_bytes"] = (conn.rx_at_done or conn.rx_bytes) - rx_before
    out["fragmented"] = conn.fragmented
    return out


async def site_streams(conns, *, ramp_s: float, deadline_s: float, prompt_tag: str):
    n = len(conns)
    t0 = time.time() + 0.3
    deadline = t0 + deadline_s
    results = await asyncio.gather(*(
        site_answer(conn, f"bench {prompt_tag} socket {i}: please answer", t0 + ramp_s * i / n, deadline)
        for i, conn in enumerate(conns)
    ))
    return results, t0, time.time()


REPLY_TAG = re.compile(r"^\[site-(\d+)\] ")


def site_summary(results: list[dict], emulator_log: dict, reply_chars: int, *, phase_end: float) -> dict:
    """Figures of the site phase.

    An upstream event the client never received before the phase deadline is
    counted with latency (phase end - ts): a lower bound ("censored").
    """
    latencies, ttfd, errors, durations, stream_secs = [], [], [], [], []
    deltas = chars = delivered_chars = complete = content_ok = unmatched = censored = lost_deltas = 0
    rx_total = delta_wire = frames_total = foreign = gaps = 0
    by_type: dict[str, int] = {}
    firsts, lasts = [], []
    claimed: set[str] = set()
    for r in results:
        if r["error"]:
            errors.append(r["error"])
        firsts.append(r["sent"])
        own_conversation = None
        text, last_seq = "", 0
        answer_frames, delta_frames = [], []
        done = None
        for arrived, data in r["frames"]:
            try:
                frame = json.loads(data)
            except ValueError:
                frame = {"type": "?"}
            if isinstance(frame, str):  # protocol v2: the next piece of the answer, as a bare string
                frame = {"type": "delta", "seq": last_seq + 1, "text": frame}
            kind = frame.get("type")
            if kind == "conversation":
                if own_conversation is None:
                    own_conversation = frame["conversation"]["id"]
                elif frame["conversation"]["id"] != own_conversation:
                    foreign += 1
                    continue
            answer_frames.append((kind, len(data)))
            if kind == "delta":
                if frame["seq"] != last_seq + 1:
                    gaps += 1
                last_seq = frame["seq"]
                text = frame["text"] if frame.get("reset") else text + frame["text"]
                delta_frames.append((arrived, len(text)))
                delta_wire += ws_frame_bytes(len(data))
            elif kind == "snapshot":
                text, last_seq = frame["content"], frame["seq"]
                delta_frames.append((arrived, len(text)))
            elif kind == "done":
                done = frame
        for kind, size in answer_frames:
            by_type[kind] = by_type.get(kind, 0) + ws_frame_bytes(size)
        frames_total += len(answer_frames)
        deltas += sum(1 for kind, _ in answer_frames if kind == "delta")
        if delta_frames:
            ttfd.append((delta_frames[0][0] - r["sent"]) * 1000)
        ok = done is not None and r["ok"]
        if ok:
            complete += 1
            # v2 leaves `content` out of `done` when the socket already has the whole text
            final = done["content"] if done.get("content") is not None else text
            chars += len(final)
            delivered_chars += len(final)  # the text the person has, whichever frame brought it
            rx_total += r["rx_bytes"]
            lasts.append(r["done_at"])
            durations.append(r["done_at"] - r["sent"])
            if delta_frames:
                stream_secs.append(r["done_at"] - delta_frames[0][0])
            tag = REPLY_TAG.match(final)
            if done.get("status") == "complete" and tag and final == make_reply("site", int(tag.group(1)), reply_chars):
                content_ok += 1
            if final != text:
                lost_deltas += 1
            key = reply_key(final)
        else:
            delivered_chars += len(text)
            tag = REPLY_TAG.match(text)
            key = reply_key(make_reply("site", int(tag.group(1)), reply_chars)) if tag else None
        log = emulator_log.get(key) if key else None
        if log is None:
            unmatched += 1
            continue
        claimed.add(key)
        # Two pointers: event j is held once the client's text reaches its end offset.
        pointer = 0
        for j, ts in enumerate(log["ts"]):
            end = min((j + 1) * log["chunk"], log["length"])
            while pointer < len(delta_frames) and delta_frames[pointer][1] < end:
                pointer += 1
            if pointer < len(delta_frames):
                arrived = delta_frames[pointer][0]
            elif ok:
                arrived = r["done_at"]  # the text came whole in `done` (after a reset)
            else:
                arrived = phase_end
                censored += 1
            latencies.append((arrived - ts) * 1000)
    for key, log in emulator_log.items():  # streams the client never saw a byte of
        if key not in claimed:
            censored += len(log["ts"])
            latencies.extend((phase_end - ts) * 1000 for ts in log["ts"])
    wall = ((max(lasts) if len(lasts) == len(results) else phase_end) - min(firsts)) if firsts else None
    n = max(1, len(results))
    return {
        "answers": len(results),
        "complete": complete,
        "content_ok": content_ok,
        # done answers whose deltas did not add up to the final text (it came only in `done`)
        "answers_with_lost_deltas": lost_deltas,
        "unmatched_in_emulator_log": unmatched,
        "upstream_streams_started": len(emulator_log),
        "censored_events": censored,
        "seq_gaps": gaps,
        "errors": errors[:10],
        "error_count": len(errors),
        "latency_ms": percentiles(latencies),
        "ttfd_ms": percentiles(ttfd),
        "answer_s": percentiles(durations),
        "deltas": deltas,
        "deltas_per_answer": round(deltas / n, 1),
        "frames_per_answer": round(frames_total / n, 1),
        "foreign_frames_per_answer": round(foreign / n, 2),
        "wall_s": round(wall, 3) if wall else None,
        "deltas_per_s": round(deltas / wall, 1) if wall else None,
        "chars_per_s": round(delivered_chars / wall, 1) if wall else None,
        "answers_per_s": round(complete / wall, 3) if wall else None,
        "bytes_per_char": round(rx_total / chars, 3) if chars else None,
        "delta_bytes_per_char": round(delta_wire / delivered_chars, 3) if delivered_chars else None,
        "wire_bytes_by_frame_type_per_answer": {k: round(v / n, 1) for k, v in sorted(by_type.items())},
        "mean_streaming_s": round(sum(stream_secs) / len(stream_secs), 3) if stream_secs else None,
    }


# --- server sampling and py-spy ----------------------------------------------------

async def sample_process(pids: list[int], stop: asyncio.Event, interval: float = 0.2) -> dict:
    peak = 0
    samples = 0
    while not stop.is_set():
        with contextlib.suppress(OSError):
            peak = max(peak, rss_kb_all(pids))
            samples += 1
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    return {"rss_kb_peak": peak, "samples": samples}


def start_py_spy(pid: int, path: Path, duration: int, fmt: str, delay: float = 0) -> subprocess.Popen:
    py_spy = Path(sys.executable).with_name("py-spy")
    wait = ["sleep", str(delay), "&&"] if delay > 0 else []
    command = [str(py_spy), "record", "--pid", str(pid), "--subprocesses", "--duration", str(duration), "--rate", "100",
         "--nonblocking", "--format", fmt, "-o", str(path)] + (["--threads"] if fmt == "raw" else [])
    if wait:  # start later: the steady state of the streams rather than their start
        return subprocess.Popen(["sh", "-c", " ".join(wait + [shlex.quote(c) for c in command])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
    # Warm-up: one full answer, so lazy imports, pools and caches are not counted.
    ws_url = ws_url_of(site, args.protocol)
    warm = await open_sockets(ws_url, site.url, cookies[:1], 1)
    await emulator_queue(stack.emulator.url, ["Warm-up answer. " * 8])
    warm_result = await site_answer(warm[0], "warm up", time.time(), time.time() + 60)
    await close_sockets(warm)
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
        profiles = [start_py_spy(site.process.pid, base.with_suffix(".txt"), duration, "raw", delay),
                    start_py_spy(site.process.pid, base.with_suffix(".svg"), duration, "flamegraph", delay)]
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


def compare(result: dict) -> tuple[dict, list]:
    site = result.get("site") or {}
    ref = result.get("reference") or {}
    ratios = {}
    for group in ("latency_ms", "ttfd_ms"):
        for p in ("p50", "p95", "p99", "max"):
            ratios[f"{group}.{p}"] = ratio((site.get(group) or {}).get(p), (ref.get(group) or {}).get(p))
    ratios["throughput.chars_per_s"] = ratio(site.get("chars_per_s"), ref.get("chars_per_s"))
    ratios["throughput.answers_per_s"] = ratio(site.get("answers_per_s"), ref.get("answers_per_s"))
    ratios["deltas_per_s_vs_events_per_s"] = ratio(site.get("deltas_per_s"), ref.get("events_per_s"))
    ratios["bytes_per_char"] = ratio(site.get("bytes_per_char"), ref.get("bytes_per_char"))
    targets = []

    def add(figure, value, limit, met, note=""):
        targets.append({"figure": figure, "value": value, "target": limit,
                        "met": None if value is None or met is None else bool(met), "note": note})

    sp99 = (site.get("latency_ms") or {}).get("p99")
    rp99 = (ref.get("latency_ms") or {}).get("p99")
    over = round(sp99 - rp99, 2) if sp99 is not None and rp99 is not None else None
    add("relay p99 minus reference p99 (ms)", over, f"<= {TARGETS['p99_over_reference_ms']:g}",
        over is not None and over <= TARGETS["p99_over_reference_ms"])
    s50 = (site.get("ttfd_ms") or {}).get("p50")
    r50 = (ref.get("ttfd_ms") or {}).get("p50")
    first = round(s50 - r50, 2) if s50 is not None and r50 is not None else None
    add("time to first delta p50 minus reference (ms)", first, f"<= {TARGETS['ttfd_p50_over_reference_ms']:g}",
        first is not None and first <= TARGETS["ttfd_p50_over_reference_ms"])
    cpu = (site.get("server") or {}).get("cpu_s")
    per_delta = round(cpu / site["deltas"] * 1e6, 1) if cpu is not None and site.get("deltas") else None
    add("site CPU per upstream delta relayed (µs)", per_delta, f"<= {TARGETS['cpu_us_per_delta']:g}",
        per_delta is not None and per_delta <= TARGETS["cpu_us_per_delta"],
        "all processes of the site; the client and the upstream share the machine")
    tr = ratios["throughput.chars_per_s"]
    add("delivered chars/s, site / reference", tr, f">= {TARGETS['throughput_ratio']:g}",
        tr is not None and tr >= TARGETS["throughput_ratio"])
    bpc = site.get("bytes_per_char")
    all_done = site.get("complete") == site.get("answers")
    streamed = not site.get("answers_with_lost_deltas")
    add("wire bytes per answer / answer chars", bpc, f"<= {TARGETS['bytes_per_char']:g}",
        (bpc is not None and bpc <= TARGETS["bytes_per_char"]) if all_done and streamed else None,
        "" if all_done and streamed else
        "answers unfinished at the deadline: no verdict" if not all_done else
        "deltas lost (the text came in `done`): no verdict")
    db = site.get("db_writes") or {}
    if db:
        limit = db["target_per_answer"]
        note = "2 + 1 per second of streaming" if limit else "answers unfinished at the deadline: no verdict"
        add("DB writes per answer (all chat rows)", db["per_answer"], f"<= {limit}",
            None if limit is None else db["per_answer"] <= limit, note)
        add("DB writes per answer (assistant message row)", db["assistant_message_per_answer"],
            f"<= {limit}", None if limit is None else db["assistant_message_per_answer"] <= limit, note)
    per_socket = (site.get("server") or {}).get("rss_kb_per_idle_socket")
    n = result["config"]["streams"]
    add("RSS per idle socket (KiB)", per_socket, f"<= {TARGETS['rss_kb_per_idle_socket']:g}",
        per_socket is not None and per_socket <= TARGETS["rss_kb_per_idle_socket"],
        "meaningful from ~100 sockets" if n < 100 else "")
    return ratios, targets


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
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--debug", action="store_true", help="run the site with DJANGO_DEBUG=true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment of the site (e.g. CHAT_SAVE_INTERVAL=3600); repeatable")
    parser.add_argument("--py-spy", default="", help="profile the site during the streams: PATH.txt (raw) + PATH.svg")
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
            f"(ref {(r.get('ttfd_ms') or {}).get('p50')}), chars/s ratio {result['ratios'].get('throughput.chars_per_s')}, "
            f"bytes/char {s.get('bytes_per_char')}, complete {s.get('complete')}/{s.get('answers')}, "
            f"cpu {(s.get('server') or {}).get('cpu_cores')} cores")


if __name__ == "__main__":
    sys.exit(main())
