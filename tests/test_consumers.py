"""The chat websocket against the real GPTalk emulator over loopback: connecting, one
exchange from send to done, upstream faults, stop, and saving while an answer streams."""


import pytest

from chat.models import Conversation, Message
from chat.services import conversations as conversation_services
from tests.ws import connect, is_done, poll, receive_until, send_and_finish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]

REPLY = "Hello — this is a scripted answer with «Unicode» and\u2028a line separator. 🙂"


# ---- connecting -------------------------------------------------------------


async def test_anonymous_socket_is_refused(emulator):
    communicator = await connect(user=None)
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.parametrize("origin", ["http://evil.example", "null", None])
async def test_foreign_or_missing_origin_is_refused(alice, emulator, origin):
    communicator = await connect(alice, origin=origin)
    connected, _ = await communicator.connect()
    assert not connected


# ---- a whole exchange ---------------------------------------------------------


async def test_send_streams_answer_and_saves_everything(alice_ws, alice, emulator):
    await emulator.anext(reply=REPLY, chunk_chars=5, interval_ms=1)
    frames = await send_and_finish(alice_ws, content="Hi there")

    kinds = [f["type"] for f in frames]
    assert kinds[:3] == ["conversation", "message", "message"]
    conversation = frames[0]["conversation"]
    user_frame, placeholder = frames[1], frames[2]
    assert user_frame["ref"] == "r1"
    assert user_frame["message"]["role"] == "user"
    assert user_frame["message"]["content"] == "Hi there"
    assert placeholder["message"]["role"] == "assistant"
    assert placeholder["message"]["status"] == "pending"
    assert "ref" not in placeholder

    deltas = [f for f in frames if f["type"] == "delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert len(deltas) > 3
    assert all(d["message"] == placeholder["message"]["id"] for d in deltas)
    assert "".join(d["text"] for d in deltas) == REPLY
    done = frames[-1]
    assert done == {
        "type": "done",
        "message": placeholder["message"]["id"],
        "status": "complete",
        "content": REPLY,
        "error": None,
        "seq": len(deltas),
        "model": "GPTalk/gpt-3.5-turbo",  # the model that wrote it (the emulator's default)
    }

    saved = await Message.objects.aget(pk=placeholder["message"]["id"])
    assert saved.model == done["model"]
    assert saved.content == REPLY
    assert saved.status == Message.Status.COMPLETE
    # Upstream deltas counted one by one; those that arrived in one turn of the
    # event loop (or before the rows were saved) went out as one frame.
    assert saved.delta_count >= len(deltas)
    assert saved.first_delta_ms is not None and saved.duration_ms is not None
    conv = await Conversation.objects.aget(pk=conversation["id"])
    assert conv.owner_id == alice.pk
    assert conv.title == "Hi there"


async def test_second_message_sends_the_whole_history_upstream(alice_ws, emulator):
    await emulator.anext(reply="First answer.")
    frames = await send_and_finish(alice_ws, content="First question")
    conversation_id = frames[0]["conversation"]["id"]
    await emulator.anext(reply="Second answer.")
    frames = await send_and_finish(alice_ws, conversation=conversation_id, content="Second question")
    assert frames[-1]["content"] == "Second answer."
    prompts = (await emulator.astats())["last_prompts"]
    assert prompts[-1] == (
        "User: First question\nAssistant: First answer.\nUser: Second question\nAssistant:"
    )
    assert prompts[-2] == "First question"


async def test_rewritten_upstream_text_ends_exactly_as_upstream(alice_ws, emulator):
    await emulator.anext(reply="The final, rewritten text of the answer.", fault="stream_rewrite")
    frames = await send_and_finish(alice_ws)
    text = ""
    for frame in frames:
        if frame["type"] == "delta":
            text = frame["text"] if frame.get("reset") else text + frame["text"]
    assert any(f.get("reset") for f in frames if f["type"] == "delta")
    assert frames[-1]["status"] == "complete"
    assert text == frames[-1]["content"]
    saved = await Message.objects.aget(pk=frames[-1]["message"])
    assert saved.content == text


# ---- upstream faults ------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    ["login_500", "login_no_data", "text_500", "text_429", "text_no_data", "stream_cut", "stream_malformed"],
)
async def test_upstream_fault_fails_the_answer_and_keeps_everything(alice_ws, emulator, fault):
    if fault.startswith("login_"):
        await emulator.anext(fault=fault)
    else:
        await emulator.anext(reply="Partial text that will be cut somewhere along the way.", fault=fault)
    if fault in ("text_no_data",):
        # The client logs in again and retries once; fail that too.
        await emulator.anext(fault=fault)
    frames = await send_and_finish(alice_ws, content="Keep me")
    done = frames[-1]
    assert done["status"] == "failed"
    assert done["error"] and len(done["error"]) > 10
    user_message = await Message.objects.aget(role="user", conversation_id=frames[0]["conversation"]["id"])
    assert user_message.content == "Keep me"
    saved = await Message.objects.aget(pk=done["message"])
    assert saved.status == Message.Status.FAILED
    assert saved.error == done["error"]
    streamed = "".join(f["text"] for f in frames if f["type"] == "delta")
    assert saved.content == done["content"] == streamed
    if fault in ("stream_cut", "stream_malformed"):
        assert streamed, "the partial text before the fault is kept"


async def test_stalled_upstream_fails_after_read_timeout(alice_ws, emulator, settings):
    settings.GPTALK_READ_TIMEOUT = 0.5
    await emulator.anext(reply="Some text before the stall happens here.", fault="stream_stall")
    frames = await send_and_finish(alice_ws)
    assert frames[-1]["status"] == "failed"
    assert "GPTalk" in frames[-1]["error"]
    await poll(lambda: _active_streams_zero(emulator))


async def _active_streams_zero(emulator):
    return (await emulator.astats())["active_streams"] == 0


# ---- stop -------------------------------------------------------------------


async def test_stop_cancels_upstream_and_saves_partial_as_stopped(alice_ws, emulator):
    await emulator.anext(reply="x" * 4000, chunk_chars=4, interval_ms=20)
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "long"})
    frames = await receive_until(alice_ws, lambda f: f["type"] == "delta" and f["seq"] >= 3)
    message_id = frames[-1]["message"]
    assert (await emulator.astats())["active_streams"] == 1
    await alice_ws.send_json_to({"type": "chat.stop", "message": message_id})
    frames += await receive_until(alice_ws, is_done)
    done = frames[-1]
    assert done["status"] == "stopped"
    assert 0 < len(done["content"]) < 4000
    await poll(lambda: _active_streams_zero(emulator), timeout=2)
    saved = await Message.objects.aget(pk=message_id)
    assert saved.status == Message.Status.STOPPED
    assert saved.content == done["content"]


async def test_stop_of_a_finished_answer_is_refused(alice_ws, emulator):
    frames = await send_and_finish(alice_ws)
    await alice_ws.send_json_to({"type": "chat.stop", "message": frames[-1]["message"], "ref": "s"})
    error = await alice_ws.receive_json_from()
    assert error == {
        "type": "error",
        "code": "not_streaming",
        "detail": error["detail"],
        "ref": "s",
    }


# ---- saving while streaming ---------------------------------------------------


async def test_text_is_saved_about_once_a_second_not_per_delta(alice_ws, emulator, monkeypatch):
    saves = []
    real = conversation_services.messages_save_progress

    async def counting(*, rows):
        saves.extend(content for _, content, _ in rows)
        await real(rows=rows)

    monkeypatch.setattr(conversation_services, "messages_save_progress", counting)
    await emulator.anext(reply="y" * 600, chunk_chars=4, interval_ms=15)  # 150 deltas, ~2.3 s
    frames = await send_and_finish(alice_ws)
    deltas = [f for f in frames if f["type"] == "delta"]
    assert "".join(d["text"] for d in deltas) == "y" * 600  # 150 upstream deltas
    assert 1 <= len(saves) <= 4
    # What was saved while streaming was a prefix of the answer at that time.
    assert all(frames[-1]["content"].startswith(text) for text in saves)


async def test_deltas_reach_the_socket_without_a_trip_to_the_database_thread(
    alice_ws, emulator, monkeypatch
):
    """Channels closes stale DB connections in the database thread before each
    event it dispatches; the stream's frames come from the hub and never pass
    there (that hop queued every delta behind all database work), and neither
    do incoming frames (test_consumers_frames: handled while that thread is
    busy); the manager checks the connections once a second instead."""
    import channels.consumer

    hops = []
    real = channels.consumer.aclose_old_connections

    async def counting():
        hops.append(1)
        await real()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counting)
    await emulator.anext(reply="w" * 240, chunk_chars=4, interval_ms=2)  # 60 deltas
    frames = await send_and_finish(alice_ws)
    deltas = [f for f in frames if f["type"] == "delta"]
    # Deltas that arrive in one turn of the event loop go out as one.
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d["text"] for d in deltas) == "w" * 240 == frames[-1]["content"]
    # Neither the chat.send command nor the 60 deltas, the messages and `done`.
    assert hops == []


async def test_a_silent_upstream_still_refreshes_the_lease(alice_ws, emulator, settings):
    settings.CHAT_GENERATION_LEASE = 0.9  # refresh every 0.3 s while nothing arrives
    settings.CHAT_SAVE_INTERVAL = 0.1
    await emulator.anext(reply="z" * 50, chunk_chars=5, interval_ms=1, fault="stream_stall")
    settings.GPTALK_READ_TIMEOUT = 2.0
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "stall"})
    frames = await receive_until(alice_ws, lambda f: f["type"] == "delta" and f["seq"] >= 3)
    message_id = frames[-1]["message"]
    first = (await Message.objects.aget(pk=message_id)).updated_at

    async def refreshed():
        message = await Message.objects.aget(pk=message_id)
        return message.updated_at > first and message.status == Message.Status.STREAMING

    await poll(refreshed, timeout=3)
    done = (await receive_until(alice_ws, is_done))[-1]
    assert done["status"] == "failed"  # the stall ends at the read timeout, not as interrupted


async def test_closing_the_socket_does_not_stop_the_answer(alice, emulator):
    ws = await connect(alice)
    assert (await ws.connect())[0]
    await emulator.anext(reply="z" * 400, chunk_chars=4, interval_ms=5)
    await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "go"})
    frames = await receive_until(ws, lambda f: f["type"] == "delta")
    message_id = frames[-1]["message"]
    await ws.disconnect()

    async def finished():
        message = await Message.objects.aget(pk=message_id)
        return message if message.status == Message.Status.COMPLETE else None

    message = await poll(finished)
    assert message.content == "z" * 400
