"""The reference of a relay run: aiohttp straight to the emulator, the floor the site is measured against."""

from __future__ import annotations

import asyncio
import json
import time

from bench.relay_measure import percentiles

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
    latencies, ttfd, errors, stream_s = [], [], [], []
    events = chars = complete = total_bytes = 0
    firsts, lasts = [], []
    for r in results:
        if r["error"]:
            errors.append(r["error"])
        if r["events"]:
            ttfd.append((r["events"][0][0] - r["started"]) * 1000)
            firsts.append(r["started"])
            stream_s.append(r["events"][-1][1] - r["events"][0][1])  # the upstream's own pace
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
        "upstream_stream_s": percentiles(stream_s),
        "events": events,
        "wall_s": round(wall, 3) if wall else None,
        "events_per_s": round(events / wall, 1) if wall else None,
        "chars_per_s": round(chars / wall, 1) if wall else None,
        "answers_per_s": round(complete / wall, 3) if wall else None,
        # The upstream protocol resends the cumulative text: quadratic, shown for scale.
        "bytes_per_char": round(total_bytes / chars, 2) if chars else None,
    }

