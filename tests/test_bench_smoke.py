"""A small smoke of the benchmark harness (bench/), so that it keeps working.

It runs bench/relay.py and bench/soak.py for real (emulator, daphne, websockets,
the aiohttp reference) with a few short streams, and checks that the results are
complete and sane. No timing assertions: the figures depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fixtures.emulator import REPO_ROOT

pytest_plugins = ["tests.fixtures.services"]

TARGET_FIGURES = {
    "relay p99 minus reference p99 (ms)",
    "time to first delta p50 minus reference (ms)",
    "site CPU per upstream delta relayed (µs)",
    "delivered chars/s, site / reference",
    "wire bytes per answer / answer chars",
    "DB writes per answer (all chat rows)",
    "DB writes per answer (assistant message row)",
    "RSS per idle socket (KiB)",
}


def run_script(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def relay_result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "relay.json"
    proc = run_script(
        "bench/relay.py", "--streams", "3", "--layer", "memory", "--db", "sqlite",
        "--reply-chars", "60", "--interval-ms", "5", "--chunk-chars", "6", "--ramp-s", "0.2",
        "--deadline-s", "60", "--out", str(out),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_relay_smoke_delivers_every_answer(relay_result):
    site, ref = relay_result["site"], relay_result["reference"]
    assert relay_result["config"]["streams"] == 3
    for side in (site, ref):
        assert side["answers"] == 3
        assert side["complete"] == 3, side["errors"]
        assert side["content_ok"] == 3
        assert side["error_count"] == 0
    assert ref["events"] == 3 * 10  # 60 characters, 6 per event
    assert site["deltas"] > 0 and site["seq_gaps"] == 0
    assert site["unmatched_in_emulator_log"] == 0 and site["censored_events"] == 0


def test_relay_smoke_has_every_figure(relay_result):
    site, ref = relay_result["site"], relay_result["reference"]
    for side in (site, ref):
        for group in ("latency_ms", "ttfd_ms"):
            stats = side[group]
            assert set(stats) >= {"p50", "p95", "p99", "max"}
            assert stats["n"] > 0 and stats["p50"] <= stats["p99"] <= stats["max"]
        assert side["chars_per_s"] > 0 and side["answers_per_s"] > 0
    # Where an answer's time goes: until the upstream is asked, its own pace, the end.
    for group in ("upstream_asked_ms", "upstream_first_event_ms", "done_after_last_event_ms"):
        assert site[group]["n"] == 3 and site[group]["p50"] > 0, group
    assert site["upstream_asked_ms"]["max"] <= site["upstream_first_event_ms"]["max"]
    for side in (site, ref):
        # 10 events 5 ms apart: at least the 9 pauses between them
        assert side["upstream_stream_s"]["n"] == 3 and side["upstream_stream_s"]["p50"] >= 0.045
    # Every upstream event of every answer got a relay latency.
    assert site["latency_ms"]["n"] == ref["latency_ms"]["n"] == 30
    assert site["bytes_per_char"] > 1  # the text itself, plus framing
    server = site["server"]
    assert 0 < server["rss_kb_start"] <= server["rss_kb_peak"]
    assert server["cpu_s"] >= 0 and "rss_kb_per_idle_socket" in server
    writes = site["db_writes"]
    # At least: the assistant placeholder and its final save, per answer.
    assert writes["assistant_message_per_answer"] >= 2
    assert writes["per_answer"] >= writes["assistant_message_per_answer"]
    assert {t["figure"] for t in relay_result["targets"]} == TARGET_FIGURES
    assert set(relay_result["ratios"]) >= {"latency_ms.p99", "ttfd_ms.p50", "throughput.chars_per_s"}


def test_soak_smoke(tmp_path):
    out = tmp_path / "soak.json"
    proc = run_script(
        "bench/soak.py", "--cycles", "10", "--warmup", "2", "--answers", "2", "--parallel", "5",
        "--users", "2", "--settle-s", "0.2", "--out", str(out),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    for part in ("connect_disconnect", "with_answers"):
        assert result[part]["failures"] == 0, result[part]["failure_samples"]
        assert result[part]["rss_kb_before"] > 0 and result[part]["rss_kb_after"] > 0


def test_profile_parts_sort_each_sample_into_one_part(tmp_path):
    """bench/profile_summary.py --parts: the first matching part wins (sending
    before the hub that calls it); what matches none is the loop's."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        from profile_summary import REST, parts
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))
    profile = tmp_path / "p.txt"
    profile.write_text(
        "thread (1): MainThread;run (uvloop);Hub.flush (chat/delivery/hub.py:255);"
        "ChatConsumer.send_frame (chat/consumers.py:167);_write (chat/transport.py:41) 6\n"
        "thread (1): MainThread;Hub.flush (chat/delivery/hub.py:246) 2\n"
        "thread (1): MainThread;DeltaStream.feed (chat/upstream/gptalk_stream.py:113) 1\n"
        "thread (1): MainThread;run (uvloop) 1\n"
    )
    shares = parts(profile)
    assert shares == {
        "sending frames (daphne, autobahn, Twisted, the socket)": 0.6,
        "the hub, the followers, encoding frames": 0.2,
        "reading the upstream (aiohttp, httpx, the GPTalk parser)": 0.1,
        REST: 0.1,
    }
    out = run_script("bench/profile_summary.py", str(profile), "--parts", "--per-delta-us", "100")
    assert "60.0%   60.0 µs  sending frames" in out.stdout


def test_hub_cost_smoke():
    """bench/hub_cost.py drives the hub directly: it must follow the hub's API."""
    proc = run_script("bench/hub_cost.py", "--sockets", "5", "--deltas", "5", timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().endswith("µs of CPU per delta")


@pytest.mark.multiprocess
def test_layer_cost_smoke(redis_url):
    """bench/layer_cost.py: two links on a real Redis, both layers, nothing lost."""
    import ast

    proc = run_script("bench/layer_cost.py", "--redis-url", redis_url, "--answers", "3", "--seconds", "0.3",
                      timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [ast.literal_eval(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["layer"] for r in results] == ["core", "pubsub"]
    for result in results:
        assert result["sent"] > 0 and result["received"] == result["sent"], result
