"""What the channel layer costs for an answer followed from another process.

    .venv/bin/python bench/layer_cost.py [--redis-url redis://127.0.0.1:6379/0] [--answers 100]

Two LayerLinks (chat/delivery/link.py), each on a layer instance of its own as
two processes would have, on a real Redis: link A forwards every answer's
deltas to link B (50 a second per answer, as the upstream paces them, in the
batches the hub sends), for channels_redis's list-based core layer and its
pub/sub layer as the site runs it (chat.layers: a turn's messages in one
pipeline). Prints, per layer, the events delivered, their delay from send to
receipt (p50 / p99) and the CPU of this process (both ends) per event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptalk_site.settings")

import django  # noqa: E402

django.setup()

from channels_redis.core import RedisChannelLayer  # noqa: E402

from chat import events  # noqa: E402
from chat.delivery.link import LayerLink  # noqa: E402
from chat.layers import RedisPubSubChannelLayer  # noqa: E402

LAYERS = {"core": RedisChannelLayer, "pubsub": RedisPubSubChannelLayer}


async def measure(kind: str, url: str, answers: int, seconds: float) -> dict:
    delays: list[float] = []
    received = [0]
    expected = [0]
    all_in = asyncio.Event()

    def on_event(event: dict) -> None:
        now = time.monotonic()
        for item in event.get("events", ()):
            received[0] += 1
            delays.append(now - item["sent"])
        if expected[0] and received[0] >= expected[0]:
            all_in.set()

    a = LayerLink(LAYERS[kind](hosts=[url]), on_event=lambda event: None, on_back=lambda: None)
    b = LayerLink(LAYERS[kind](hosts=[url]), on_event=on_event, on_back=lambda: None)
    await a.start()
    await b.start()
    await asyncio.sleep(0.2)
    sent = 0
    cpu = time.process_time()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        tick = time.monotonic()
        for answer in range(answers):  # one delta per answer every 20 ms
            event = events.delta(message=answer, conversation=answer, seq=sent, text="abcd")
            event["sent"] = tick
            a.send_later(b.channel, event)
            sent += 1
        await asyncio.sleep(max(0.0, 0.02 - (time.monotonic() - tick)))
    expected[0] = sent
    if received[0] < sent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 5)
    cpu = time.process_time() - cpu
    await a.close()
    await b.close()
    delays.sort()
    pick = (lambda q: round(delays[min(len(delays) - 1, int(q * len(delays)))] * 1000, 2)) if delays else None
    return {
        "layer": kind, "sent": sent, "received": received[0],
        "delay_ms_p50": pick(0.5) if pick else None, "delay_ms_p99": pick(0.99) if pick else None,
        "cpu_us_per_event": round(cpu / max(1, received[0]) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--answers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    for kind in LAYERS:
        print(asyncio.run(measure(kind, args.redis_url, args.answers, args.seconds)))


if __name__ == "__main__":
    main()
