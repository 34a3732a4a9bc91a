"""PostgreSQL restarted mid-answer under two processes behind nginx: the
periodic saves and the final save are retried, the answer is saved whole and
both sockets end with its exact text; no process is restarted, and their
sweeps work again (with no request coming in to reset a connection)."""

import asyncio
import time

import pytest

from tests.fixtures.cluster import LEASE, ending, frames_until_done, is_done, open_sockets, start_chat

pytestmark = pytest.mark.multiprocess
pytest_plugins = ["tests.fixtures.faults"]

REPLY = "".join(f"[{i:04d}]" for i in range(300))  # 1,800 characters: about 2.3 s at 8 per 10 ms
DOWN_AT = 1.0  # seconds into the answer
DOWN_FOR = 3.0  # past the answer's end: its final save meets the outage too
SWEPT_WITHIN = LEASE + 5  # a sweep runs every half lease


def test_postgres_restart_mid_answer(cluster):
    cluster.emulator.next(reply=REPLY, chunk_chars=8, interval_ms=10)
    pids = [site.children() for site in cluster.sites]

    async def scenario():
        sender, watcher = await open_sockets(cluster.proxy, cluster.cookie, 2)
        conversation, message_id, sent = await start_chat(sender, content="survive a database restart")
        await watcher.send({"type": "conversation.open", "conversation": conversation})
        watched = await watcher.recv_until(lambda f: f["type"] in ("snapshot", "delta"))
        await asyncio.sleep(DOWN_AT)
        await asyncio.to_thread(cluster.postgres.stop)
        await asyncio.sleep(DOWN_FOR)
        await asyncio.to_thread(cluster.postgres.start)
        back = time.monotonic()
        ends = await asyncio.gather(*(frames_until_done(s, timeout=20) for s in (sender, watcher)))
        healed = time.monotonic() - back
        # The row is saved whole once the database is back (a retry may come after the `done`).
        while cluster.rows(message_id)[message_id][0] in ("pending", "streaming"):
            if time.monotonic() - back > 20:
                break
            await asyncio.sleep(0.1)
        saved = time.monotonic() - back
        for s in (sender, watcher):
            await s.close()
        return message_id, sent + ends[0], watched + ends[1], healed, saved

    message_id, sent, watched, healed, saved = asyncio.run(scenario())
    status = cluster.rows(message_id)[message_id][0]
    print(f"FIGURE postgres restart: in flight 1, sockets 2, last done {healed:.2f} s and row {status} "
          f"{saved:.2f} s after PostgreSQL returned")
    assert status not in ("pending", "streaming"), "the final save was not retried"
    for frames in (sent, watched):
        assert is_done(frames[-1]), ending(frames)
        assert frames[-1]["status"] == "complete" and frames[-1]["content"] == REPLY, ending(frames)
    assert cluster.rows(message_id) == {message_id: ("complete", REPLY)}, "saved whole"
    assert [site.children() for site in cluster.sites] == pids, "no process was restarted"
    assert all(site.process.poll() is None for site in cluster.sites)
    # An answer left by a dead process is still swept after the restart.
    stale = cluster.stale_copy(message_id)
    deadline = time.monotonic() + SWEPT_WITHIN
    while cluster.rows(stale)[stale][0] == "streaming":
        assert time.monotonic() < deadline, "no sweep after PostgreSQL came back"
        time.sleep(0.1)
    assert cluster.rows(stale)[stale][0] == "interrupted"
