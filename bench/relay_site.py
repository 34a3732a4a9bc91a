"""The site side of a relay run: N websockets as a browser opens them, and what they received."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time

from bench.relay_measure import make_reply, percentiles, reply_key, ws_frame_bytes

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
    upstream_start = []  # chat.send sent -> the upstream's first event (the rest of ttfd is the relay's)
    # The upstream's own pace (its first to its last event) and what the site adds
    # at the end (the upstream's last event -> `done` at the client: the final save).
    upstream_stream_s, done_after_last_ms = [], []
    upstream_asked_ms = []  # chat.send sent -> the upstream app got the stream request
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
        if log["ts"]:
            upstream_start.append((log["ts"][0] - r["sent"]) * 1000)
            upstream_asked_ms.append((log["asked"] - r["sent"]) * 1000)
            upstream_stream_s.append(log["ts"][-1] - log["ts"][0])
            if ok:
                done_after_last_ms.append((r["done_at"] - log["ts"][-1]) * 1000)
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
        "upstream_first_event_ms": percentiles(upstream_start),
        "upstream_asked_ms": percentiles(upstream_asked_ms),
        "upstream_stream_s": percentiles(upstream_stream_s),
        "done_after_last_event_ms": percentiles(done_after_last_ms),
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

