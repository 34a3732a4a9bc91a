"""Redis killed mid-answer and back 2 s later, two processes behind nginx, a
socket on each following one answer: the answer completes and is saved whole,
and both sockets end with its exact text and `done` within 5 s of Redis's return.
"""

import asyncio
import time

import pytest

from tests.fixtures.cluster import ending, frames_until_done, is_done, open_sockets, replay, start_chat

pytestmark = pytest.mark.multiprocess
pytest_plugins = ["tests.fixtures.faults"]

REPLY = "".join(f"<{i:04d}>" for i in range(400))  # 2,400 characters, every one checkable
DOWN_AT = 1.5  # seconds into the answer
DOWN_FOR = 2.0
HEAL_DEADLINE = 5.0  # after Redis is back: the product's requirement


def test_redis_blip_mid_answer(cluster):
    # 2,400 characters in 8-character events every 20 ms: about 6 s.
    cluster.emulator.next(reply=REPLY, chunk_chars=8, interval_ms=20)

    async def scenario():
        sender, watcher = await open_sockets(cluster.proxy, cluster.cookie, 2)
        assert cluster.websocket_connects() == [1, 1], "least_conn put one socket on each process"
        conversation, message_id, sent = await start_chat(sender, content="survive a Redis blip")
        await watcher.send({"type": "conversation.open", "conversation": conversation})
        watched = await watcher.recv_until(lambda f: f["type"] in ("snapshot", "delta"))
        await asyncio.sleep(DOWN_AT)
        cluster.redis.kill()
        await asyncio.sleep(DOWN_FOR)
        await asyncio.to_thread(cluster.redis.start)
        back = time.monotonic()
        ends = await asyncio.gather(
            *(frames_until_done(s, timeout=HEAL_DEADLINE + 10) for s in (sender, watcher))
        )
        healed = time.monotonic() - back
        for s in (sender, watcher):
            await s.close()
        return message_id, sent + ends[0], watched + ends[1], healed

    message_id, sent, watched, healed = asyncio.run(scenario())
    print(f"FIGURE redis blip: in flight 1, sockets 2, last done {healed:.2f} s after Redis returned")
    row = cluster.rows(message_id)[message_id]
    state = f"row {row[0]} with {len(row[1])} characters; sender: {ending(sent)}; watcher: {ending(watched)}"
    for frames in (sent, watched):
        assert is_done(frames[-1]), f"no done within {HEAL_DEADLINE + 10} s of Redis's return: {state}"
        done = frames[-1]
        assert done["message"] == message_id
        assert done["status"] == "complete", done
        assert done["content"] == REPLY, "the exact text"
        text, _ = replay(frames)
        assert REPLY.startswith(text), "what the deltas showed is a prefix of the answer"
    assert healed <= HEAL_DEADLINE, f"done arrived {healed:.2f} s after Redis returned: {state}"
    assert cluster.rows(message_id) == {message_id: ("complete", REPLY)}, "saved whole"
