"""One of two processes killed (SIGKILL) with many answers streaming, sockets
through nginx: the other process's answers complete exactly; the killed one's
are marked interrupted within the lease with their text kept, and their sockets,
reconnecting through the proxy, reach the surviving process and see it."""

import asyncio
import time

import pytest

from tests.fixtures.cluster import (
    LEASE,
    ending,
    frames_until_done,
    is_done,
    open_sockets,
    start_chat,
)
from tests.fixtures.site import Socket

pytestmark = pytest.mark.multiprocess
pytest_plugins = ["tests.fixtures.faults"]

ANSWERS = 100
REPLY = "".join(f"({i:04d})" for i in range(300))  # 1,800 characters: 9 s at 8 per 40 ms
# The lease after the last save plus one sweep period (half a lease), with
# room for a loaded machine: the product's deadline for a dead process's answers.
SWEPT_WITHIN = 2 * LEASE + 5


async def heal(cluster, conversation: int, message_id: int, killed_at: float) -> tuple[dict, float]:
    """What a client does when its socket drops: reconnect through the proxy,
    reopen the conversation, wait until the answer shows as ended."""
    socket = await Socket.open(cluster.proxy, cluster.cookie)
    await socket.send({"type": "conversation.open", "conversation": conversation})
    history = await socket.recv_until(lambda f: f["type"] == "history")
    answer = next(m for m in history[-1]["messages"] if m["id"] == message_id)
    if answer["status"] in ("pending", "streaming"):
        remaining = SWEPT_WITHIN - (time.monotonic() - killed_at)
        frames = await socket.recv_until(lambda f: is_done(f) and f["message"] == message_id,
                                         timeout=max(remaining, 0.1))
        answer = {**answer, **frames[-1]}
    await socket.close()
    return answer, time.monotonic() - killed_at


def test_killing_one_of_two_processes_with_answers_streaming(cluster):
    for _ in range(ANSWERS):
        cluster.emulator.next(reply=REPLY, chunk_chars=8, interval_ms=40)
    victim, survivor = cluster.sites

    async def scenario():
        sockets = await open_sockets(cluster.proxy, cluster.cookie, ANSWERS)
        per_process = cluster.websocket_connects()
        assert all(per_process), f"least_conn spread the sockets: {per_process}"
        started = await asyncio.gather(
            *(start_chat(s, content=f"answer {n}") for n, s in enumerate(sockets))
        )
        message_ids = [message_id for _, message_id, _ in started]
        # Kill once every answer has saved some text (about once a second).
        while not all(content for _, content in cluster.rows(*message_ids).values()):
            await asyncio.sleep(0.1)
        victim.kill()
        killed_at = time.monotonic()

        async def follow(socket, conversation: int, message_id: int):
            frames = await frames_until_done(socket, timeout=60)
            await socket.close()
            if frames and is_done(frames[-1]):
                return "followed", message_id, frames[-1], None
            # Dropped with its process: the client reconnects at once.
            answer, took = await heal(cluster, conversation, message_id, killed_at)
            return "healed", message_id, answer, took

        outcomes = await asyncio.gather(
            *(follow(s, conversation, message_id) for s, (conversation, message_id, _) in zip(sockets, started))
        )
        return per_process, outcomes

    per_process, outcomes = asyncio.run(scenario())
    rows = cluster.rows(*(message_id for _, message_id, _, _ in outcomes))
    followed = [o for o in outcomes if o[0] == "followed"]
    healed = [o for o in outcomes if o[0] == "healed"]
    whole = [o for o in followed if o[2]["status"] == "complete" and o[2]["content"] == REPLY
             and rows[o[1]] == ("complete", REPLY)]
    interrupted = [o for o in healed if o[2]["status"] == "interrupted" and rows[o[1]][0] == "interrupted"]
    heal_seconds = max((o[3] for o in healed), default=0.0)
    print(
        f"FIGURE process killed: in flight {ANSWERS} (sockets per process {per_process}), "
        f"saved whole {len(whole)}, interrupted {len(interrupted)}, sockets healed {len(healed)}, "
        f"slowest heal {heal_seconds:.2f} s after the kill"
    )
    assert healed, "some sockets were on the killed process"
    assert len(followed) + len(healed) == ANSWERS
    assert len(whole) == len(followed), [ending([o[2]]) for o in followed if o not in whole][:3]
    for _, message_id, answer, took in healed:
        status, content = rows[message_id]
        assert status == "interrupted" and answer["status"] == "interrupted", (message_id, answer)
        assert content and REPLY.startswith(content), "the text saved before the kill is kept"
        assert answer["content"] == content, "the socket shows what was saved"
        assert took <= SWEPT_WITHIN, f"marked interrupted {took:.1f} s after the kill"
    assert victim.process.poll() is not None and survivor.process.poll() is None
