"""Many sockets join an answer at random points: snapshot + live deltas, no gap, no duplicate.

And an answer whose `done` never comes is ended from its saved row. Lost and
late events between processes: tests/test_delivery.py.
"""

import asyncio
import random

import pytest
from asgiref.sync import sync_to_async

from tests.ws import connect, is_done, receive_until, replay

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]


async def watcher(user, conversation_id: int, message_id: int, delay: float) -> list[dict]:
    await asyncio.sleep(delay)
    ws = await connect(user)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "conversation.open", "conversation": conversation_id})
        # Until the answer's `done`, or a history in which it has ended already
        # (a watcher that came after the end gets no `done`: nothing is running).
        return await receive_until(ws, lambda f: ended(f, message_id), timeout=30)
    finally:
        await ws.disconnect()


def ended(frame: dict, message_id: int) -> bool:
    if is_done(frame):
        return frame["message"] == message_id
    if frame["type"] == "history":
        answer = next(m for m in frame["messages"] if m["id"] == message_id)
        return answer["status"] not in ("pending", "streaming")
    return False


async def test_watchers_joining_at_random_points_see_exactly_the_answer(make_user, emulator):
    user = await sync_to_async(make_user)("crowd")
    reply = "".join(f"<{i:04d}>" for i in range(500))  # 3000 chars
    await emulator.anext(reply=reply, chunk_chars=6, interval_ms=3)  # 500 deltas, ~1.5 s
    sender = await connect(user)
    assert (await sender.connect())[0]
    await sender.send_json_to({"type": "chat.send", "conversation": None, "content": "count"})
    first = await receive_until(sender, lambda f: f["type"] == "delta")
    conversation_id, message_id = first[0]["conversation"]["id"], first[-1]["message"]

    rng = random.Random(1234)
    results = await asyncio.gather(
        *(watcher(user, conversation_id, message_id, rng.uniform(0, 1.6)) for _ in range(25))
    )
    sent = first + await receive_until(sender, is_done)
    await sender.disconnect()

    joined_at = []
    for frames in results:
        last = frames[-1]
        if last["type"] == "done":
            assert last["content"] == reply
        else:  # the history of an answer that had ended
            assert next(m for m in last["messages"] if m["id"] == message_id)["status"] == "complete"
        text, seqs = replay(frames, message_id)
        if seqs:  # joined while it streamed
            joined_at.append(seqs[0])
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gap or duplicate"
            assert text == reply
        else:  # joined after it ended: history has it
            history = frames[0]
            assert history["type"] == "history"
            answer = next(m for m in history["messages"] if m["id"] == message_id)
            assert answer["content"] == reply
    assert len(set(joined_at)) > 5, "watchers really joined at different points"
    text, seqs = replay(sent, message_id)
    assert text == reply and seqs == list(range(1, len(seqs) + 1))


async def test_a_lost_done_is_healed_from_the_saved_row(make_user, emulator):
    """An answer owned by a process that went silent (no snapshot reply, no
    `done` event ever arrives): the socket's watchdog ends it from the DB."""
    from chat.models import Conversation, Message

    user = await sync_to_async(make_user)("patient")
    conversation = await Conversation.objects.acreate(owner=user, title="orphan")
    question = await Message.objects.acreate(conversation=conversation, role="user", content="q")
    answer = await Message.objects.acreate(
        conversation=conversation, parent=question, role="assistant", status="streaming", content="half"
    )
    ws = await connect(user)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "conversation.open", "conversation": conversation.pk})
        history = await ws.receive_json_from()
        assert [m["status"] for m in history["messages"]] == ["complete", "streaming"]
        # Nobody runs this answer: no snapshot comes. Then it ends in the DB
        # without any event (as if the `done` was dropped).
        assert await ws.receive_nothing(timeout=0.5)
        await Message.objects.filter(pk=answer.pk).aupdate(status="complete", content="half and whole")
        done = (await receive_until(ws, is_done, timeout=10))[-1]
    finally:
        await ws.disconnect()
    assert done == {
        "type": "done", "message": answer.pk, "status": "complete",
        "content": "half and whole", "error": None,
    }  # no seq: it comes from the saved row, not from the answer's process
