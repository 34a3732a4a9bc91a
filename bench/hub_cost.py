"""CPU of the delivery path alone: the hub, each socket's Follower and the frame's JSON.

    .venv/bin/python bench/hub_cost.py [--sockets 100] [--deltas 150]

No network, no daphne: `--sockets` sockets whose send only encodes the frame,
each following one answer of this process; every answer gets a 4-character
delta per turn of the event loop. Prints the process's CPU per delta.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptalk_site.settings")

import django  # noqa: E402

django.setup()

from channels.layers import get_channel_layer  # noqa: E402

from chat.delivery import Hub, encode  # noqa: E402
from chat.follow import Follower  # noqa: E402
from chat.generation import Generation  # noqa: E402


class Socket:
    """What the hub needs of a consumer; sending only encodes."""

    def __init__(self, user_id: int) -> None:
        self.follower = Follower(compact=True)
        self.out: list = []
        self.queued = self.paused = False
        self.user_id = user_id
        self.sent = 0

    async def send_frames(self, frames: list) -> None:
        for frame in frames:
            encode(frame)
        self.sent += len(frames)


async def measure(sockets: int, deltas: int) -> float:
    answers: dict = {}
    hub = Hub(get_channel_layer(), answers=answers, on_stop=lambda message_id: None)
    await hub.start()
    generations = []
    for i in range(sockets):
        sock = Socket(i)
        await hub.socket_add(sock)
        hub.watch(sock, i)
        generation = Generation(message_id=10_000 + i, conversation_id=i, history=[], owner_id=1)
        answers[generation.message_id] = generation
        sock.follower.streams[generation.message_id] = 0
        generations.append(generation)
    started = time.process_time()
    for _ in range(deltas):
        for generation in generations:
            generation.absorb("abcd")
            hub.touch(generation)
        await asyncio.sleep(0)  # the delivery task's turn
        await asyncio.sleep(0)
    spent = time.process_time() - started
    await hub.close()
    return spent / (sockets * deltas) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--deltas", type=int, default=150)
    args = parser.parse_args()
    print(f"{asyncio.run(measure(args.sockets, args.deltas)):.1f} µs of CPU per delta")


if __name__ == "__main__":
    main()
