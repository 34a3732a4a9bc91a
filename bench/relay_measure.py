"""The figures of a relay run: percentiles, ratios, the targets, process sampling and py-spy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shlex
import subprocess
import sys
from pathlib import Path

from bench.common import rss_kb_all

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


def start_py_spy(pid: int, path: Path, duration: int, fmt: str, delay: float = 0, rate: int = 100,
                 gil: bool = False) -> subprocess.Popen:
    py_spy = Path(sys.executable).with_name("py-spy")
    wait = ["sleep", str(delay), "&&"] if delay > 0 else []
    command = [str(py_spy), "record", "--pid", str(pid), "--subprocesses", "--duration", str(duration), "--rate", str(rate),
         "--nonblocking", *(["--gil"] if gil else []), "--format", fmt, "-o", str(path)] + (["--threads"] if fmt == "raw" else [])
    if wait:  # start later: the steady state of the streams rather than their start
        return subprocess.Popen(["sh", "-c", " ".join(wait + [shlex.quote(c) for c in command])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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

