"""Many sockets join an answer at random points: snapshot + live deltas, no gap, no duplicate.

And when the channel layer drops events (a full channel), the gap is detected by
seq and healed by a snapshot: the text a client shows is never wrong.
"""

import asyncio
import random

import pytest
from asgiref.sync import sync_to_async

from chat.layers import InMemoryChannelLayer
from tests.ws import connect, is_done, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]


def replay(frames: list[dict], message_id: int) -> tuple[str, list[int]]:
    text, seqs = "", []
    for frame in frames:
        if frame.get("message") != message_id:
            continue
        if frame["type"] == "snapshot":
            text, seqs = frame["content"], [frame["seq"]]
        elif frame["type"] == "delta":
            text = frame["text"] if frame.get("reset") else text + frame["text"]
            seqs.append(frame["seq"])
    return text, seqs


async def watcher(user, conversation_id: int, message_id: int, delay: float) -> list[dict]:
    await asyncio.sleep(delay)
    ws = await connect(user)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "conversation.open", "conversation": conversation_id})
        return await receive_until(ws, lambda f: is_done(f) and f["message"] == message_id, timeout=30)
    finally:
        await ws.disconnect()


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
        done = frames[-1]
        assert done["content"] == reply
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


async def test_under_a_tiny_channel_capacity_text_is_never_wrong(make_user, emulator, settings):
    # A tiny channel capacity makes the in-memory layer drop events for real when
    # a burst of deltas arrives faster than the consumer reads them.
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "chat.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1}}
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        user = await sync_to_async(make_user)("lossy")
        reply = "".join(f"({i:03d})" for i in range(400))
        await emulator.anext(reply=reply, chunk_chars=5, interval_ms=0)
        ws = await connect(user)
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "burst"})
        frames = await receive_until(ws, lambda f: f["type"] in ("delta", "snapshot"))
        message_id = frames[-1]["message"]
        frames += await receive_until(
            ws, lambda f: is_done(f) or (f["type"] == "snapshot" and f["content"] == reply), timeout=30
        )
        await ws.disconnect()
        shown, _ = replay(frames, message_id)
        # Whatever was dropped, what the client built from snapshot + deltas is a
        # prefix of the answer (never wrong text), and the final text is exact.
        assert reply.startswith(shown)
        final = frames[-1]["content"]
        assert final == reply
    finally:
        channel_layers.backends.clear()


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


class DroppingLayer(InMemoryChannelLayer):
    """The real in-memory layer, losing chosen events the way a full channel does."""

    drop_seqs = {5, 6, 30}
    drop_done = True

    async def group_send(self, group, message):
        if message.get("type") == "chat.delta" and message.get("seq") in self.drop_seqs:
            return
        if message.get("type") == "chat.done" and self.drop_done:
            return
        await super().group_send(group, message)


async def test_lost_deltas_and_a_lost_done_are_healed(make_user, emulator, settings):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.test_watchers.DroppingLayer"}}
    channel_layers.backends.clear()
    try:
        user = await sync_to_async(make_user)("unlucky")
        reply = "".join(f"[{i:03d}]" for i in range(60))
        await emulator.anext(reply=reply, chunk_chars=5, interval_ms=2)
        ws = await connect(user)
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "lossy"})
        frames = await receive_until(ws, is_done, timeout=20)
        await ws.disconnect()
    finally:
        channel_layers.backends.clear()
    message_id = frames[2]["message"]["id"]
    snapshots = [f for f in frames if f["type"] == "snapshot"]
    assert len(snapshots) >= 1, "the gaps were detected and healed by a snapshot"
    shown, seqs = replay(frames, message_id)
    assert reply.startswith(shown)
    assert not {5, 6, 30} & {f["seq"] for f in frames if f["type"] == "delta"}
    # The done was lost too: the watchdog ended the answer from the saved row.
    assert frames[-1]["status"] == "complete" and frames[-1]["content"] == reply


class SlowLayer(InMemoryChannelLayer):
    """The real in-memory layer, taking 20 ms per group_send (like a busy Redis)."""

    async def group_send(self, group, message):
        await asyncio.sleep(0.02)
        await super().group_send(group, message)


async def test_a_slow_layer_gets_fewer_bigger_events_never_a_backlog(make_user, emulator, settings):
    from channels.layers import channel_layers

    from chat.models import Message

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.test_watchers.SlowLayer"}}
    channel_layers.backends.clear()
    try:
        user = await sync_to_async(make_user)("patient")
        reply = "".join(f"{i:03d}," for i in range(300))  # 1200 chars, 300 deltas 2 ms apart
        await emulator.anext(reply=reply, chunk_chars=4, interval_ms=2)
        ws = await connect(user)
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "flood"})
        frames = await receive_until(ws, is_done, timeout=30)
        await ws.disconnect()
    finally:
        channel_layers.backends.clear()
    deltas = [f for f in frames if f["type"] == "delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d["text"] for d in deltas) == reply == frames[-1]["content"]
    # 300 deltas at 2 ms could not each take a 20 ms send: they were merged.
    assert len(deltas) < 150
    saved = await Message.objects.aget(pk=frames[-1]["message"])
    assert saved.delta_count == 300 and saved.content == reply
