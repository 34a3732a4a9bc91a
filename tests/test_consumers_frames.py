"""The chat websocket against the real emulator: refused frames, ownership, and the
compact deltas of protocol v2."""

import json

import pytest

from chat.models import Conversation, Message
from tests.ws import connect, dumps, is_done, receive_until, send_and_finish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]


# ---- refused frames -------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('"text"', "bad_json"),
        (dumps({"content": "no type"}), "bad_type"),
        (dumps({"type": "chat.explode"}), "bad_type"),
        (dumps({"type": 5}), "bad_type"),
        (dumps({"type": "chat.send", "conversation": None}), "bad_field"),
        (dumps({"type": "chat.send", "conversation": None, "content": "   "}), "bad_field"),
        (dumps({"type": "chat.send", "conversation": None, "content": 7}), "bad_field"),
        (dumps({"type": "chat.send", "conversation": "1", "content": "x"}), "bad_field"),
        (dumps({"type": "chat.send", "conversation": True, "content": "x"}), "bad_field"),
        (dumps({"type": "chat.send", "content": "x"}), "bad_field"),
        (dumps({"type": "chat.stop"}), "bad_field"),
        (dumps({"type": "chat.stop", "message": -3}), "bad_field"),
        (dumps({"type": "conversation.open", "conversation": 1.5}), "bad_field"),
        (dumps({"type": "chat.send", "conversation": None, "content": "x" * 20001}), "too_long"),
        ("[" * 100000, "bad_json"),
        ("[" * 300000, "too_long"),
        (dumps({"type": "conversation.open", "conversation": 999999}), "not_found"),
        (dumps({"type": "chat.stop", "message": 999999}), "not_found"),
        (dumps({"type": "chat.regenerate", "message": 999999}), "not_found"),
        (dumps({"type": "chat.send", "conversation": 999999, "content": "x"}), "not_found"),
    ],
)
async def test_refused_frames_get_an_error_and_the_socket_stays_usable(alice_ws, emulator, frame, code):
    await alice_ws.send_to(text_data=frame)
    error = await alice_ws.receive_json_from()
    assert error["type"] == "error"
    assert error["code"] == code
    assert isinstance(error["detail"], str) and error["detail"]
    assert await Message.objects.acount() == 0
    frames = await send_and_finish(alice_ws, content="still works")
    assert frames[-1]["status"] == "complete"


async def test_binary_frame_is_refused(alice_ws, emulator):
    await alice_ws.send_to(bytes_data=b"\x00\x01")
    error = await alice_ws.receive_json_from()
    assert error["code"] == "bad_json"


async def test_error_frame_echoes_ref(alice_ws, emulator):
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "", "ref": "abc"})
    assert (await alice_ws.receive_json_from())["ref"] == "abc"


async def test_sending_while_an_answer_streams_is_refused(alice_ws, emulator):
    await emulator.anext(reply="w" * 400, chunk_chars=4, interval_ms=10)
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "one"})
    frames = await receive_until(alice_ws, lambda f: f["type"] == "delta")
    conversation_id = frames[0]["conversation"]["id"]
    await alice_ws.send_json_to({"type": "chat.send", "conversation": conversation_id, "content": "two"})
    frames = await receive_until(alice_ws, lambda f: f["type"] in ("error", "done"))
    assert frames[-1]["code"] == "busy"
    await receive_until(alice_ws, is_done)
    assert await Message.objects.filter(content="two").acount() == 0


# ---- ownership ----------------------------------------------------------------------


async def test_another_user_cannot_touch_a_conversation(alice_ws, bob, emulator):
    await emulator.anext(reply="v" * 800, chunk_chars=4, interval_ms=10)
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "mine"})
    frames = await receive_until(alice_ws, lambda f: f["type"] == "delta")
    conversation_id = frames[0]["conversation"]["id"]
    user_message_id = frames[1]["message"]["id"]
    answer_id = frames[2]["message"]["id"]

    bob_ws = await connect(bob)
    assert (await bob_ws.connect())[0]
    try:
        attempts = [
            {"type": "chat.send", "conversation": conversation_id, "content": "let me in"},
            {"type": "conversation.open", "conversation": conversation_id},
            {"type": "chat.stop", "message": answer_id},
            {"type": "chat.regenerate", "message": answer_id},
            {"type": "chat.stop", "message": user_message_id},
        ]
        for attempt in attempts:
            await bob_ws.send_json_to(attempt)
            reply = await bob_ws.receive_json_from()
            assert reply["type"] == "error" and reply["code"] == "not_found", attempt
        # Bob saw none of Alice's answer.
        assert await bob_ws.receive_nothing(timeout=0.2)
    finally:
        await bob_ws.disconnect()
    done = (await receive_until(alice_ws, is_done))[-1]
    assert done["status"] == "complete"
    assert await Message.objects.filter(content="let me in").acount() == 0


# ---- protocol v2: compact deltas ------------------------------------------------------


async def _receive_raw_until_done(ws) -> list:
    frames = []
    while True:
        raw = await ws.receive_from(timeout=10)
        frame = json.loads(raw)
        frames.append((raw, frame))
        if isinstance(frame, dict) and frame["type"] == "done":
            return frames


async def test_v2_sends_bare_string_deltas_and_a_done_without_the_text(alice, emulator):
    reply = "Compact «frames» — 4 chars at a time. 🙂"
    await emulator.anext(reply=reply, chunk_chars=4, interval_ms=1)
    ws = await connect(alice, path="/ws/chat/?v=2")
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "v2"})
        frames = await _receive_raw_until_done(ws)
    finally:
        await ws.disconnect()
    pieces = [frame for _, frame in frames if isinstance(frame, str)]
    assert "".join(pieces) == reply
    done = frames[-1][1]
    assert done["status"] == "complete" and done["seq"] == len(pieces)
    assert "content" not in done, "the socket already has every piece"
    # Every frame is compact JSON: no spaces after separators, raw UTF-8.
    assert all('": ' not in raw and '", "' not in raw for raw, f in frames if isinstance(f, dict))
    assert "«" in "".join(raw for raw, _ in frames)
    delta_bytes = sum(len(raw.encode()) + 2 for raw, frame in frames if isinstance(frame, str))
    assert delta_bytes < 3 * len(reply.encode())


async def test_v2_socket_that_joined_late_gets_the_text_in_done(alice, alice_ws, emulator):
    await emulator.anext(reply="l" * 600, chunk_chars=4, interval_ms=5)
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "late"})
    first = await receive_until(alice_ws, lambda f: f["type"] == "delta" and f["seq"] >= 5)
    conversation_id = first[0]["conversation"]["id"]
    late = await connect(alice, path="/ws/chat/?v=2")
    assert (await late.connect())[0]
    try:
        await late.send_json_to({"type": "conversation.open", "conversation": conversation_id})
        frames = await _receive_raw_until_done(late)
    finally:
        await late.disconnect()
    snapshot = next(frame for _, frame in frames if isinstance(frame, dict) and frame["type"] == "snapshot")
    text = snapshot["content"] + "".join(f for _, f in frames if isinstance(f, str))
    assert text == "l" * 600
    assert "content" not in frames[-1][1]
    await receive_until(alice_ws, is_done)


async def test_an_unknown_model_is_refused_before_anything_is_saved(alice_ws, emulator):
    for frame in (
        {"type": "chat.send", "conversation": None, "content": "x", "model": "Nope/ghost-1"},
        {"type": "chat.send", "conversation": None, "content": "x", "model": "GPTalk/not-a-model"},
    ):
        await alice_ws.send_json_to(frame)
        error = await alice_ws.receive_json_from()
        assert error["code"] == "bad_model", frame
    assert await Conversation.objects.acount() == 0
    assert await Message.objects.acount() == 0
    frames = await send_and_finish(alice_ws)
    await alice_ws.send_json_to(
        {"type": "chat.send", "conversation": frames[0]["conversation"]["id"], "content": "y",
         "model": "GPTalk/gpt-3.5-turbo"}
    )
    done = (await receive_until(alice_ws, is_done))[-1]
    assert done["status"] == "complete"
    saved = await Message.objects.aget(pk=done["message"])
    assert saved.model == "GPTalk/gpt-3.5-turbo" and saved.provider == "GPTalk"


def test_answer_frames_skip_the_session_wrapper_which_only_acts_on_http():
    """The frames of answers go to the server's own send: channels' session
    middleware saves sessions and sets cookies only on HTTP responses."""
    from channels.sessions import InstanceSessionWrapper

    from chat.consumers import _frame_send

    async def server_send(message):
        pass

    assert "websocket.send" not in InstanceSessionWrapper.save_message_types
    inner = InstanceSessionWrapper({"cookies": {}}, server_send)
    outer = InstanceSessionWrapper({"cookies": {}, "session": inner.scope["session"]}, inner.send)
    assert _frame_send(outer.send) is server_send
    assert _frame_send(server_send) is server_send


async def test_frames_are_handled_while_the_database_thread_is_busy(alice_ws, emulator):
    """A frame never waits for the database thread before its handler runs
    (channels' per-message connection check would queue it there): an answer's
    upstream request must not wait behind a batch of writes."""
    import asyncio
    import threading

    from asgiref.sync import sync_to_async

    started, release = threading.Event(), threading.Event()

    def occupy() -> None:
        started.set()
        release.wait(30)

    busy = asyncio.ensure_future(sync_to_async(occupy)())  # the one database thread, occupied
    assert await asyncio.to_thread(started.wait, 10)
    try:
        await alice_ws.send_to(text_data="{not json")
        frame = await alice_ws.receive_json_from(timeout=10)
        assert frame["type"] == "error" and frame["code"] == "bad_json"
        assert not busy.done()
    finally:
        release.set()
        await busy
