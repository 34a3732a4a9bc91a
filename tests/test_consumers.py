"""The chat websocket against the real GPTalk emulator over loopback."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from chat.models import Conversation, Message
from chat.services import conversations as conversation_services
from tests.ws import connect, dumps, is_done, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]

REPLY = "Hello — this is a scripted answer with «Unicode» and\u2028a line separator. 🙂"


async def poll(predicate, timeout: float = 10.0, interval: float = 0.02):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(interval)


@pytest.fixture
async def alice(make_user):
    return await sync_to_async(make_user)("alice")


@pytest.fixture
async def bob(make_user):
    return await sync_to_async(make_user)("bob")


@pytest.fixture
async def alice_ws(alice, emulator):
    communicator = await connect(alice)
    connected, _ = await communicator.connect()
    assert connected
    yield communicator
    await communicator.disconnect()


async def send_and_finish(ws, *, conversation=None, content="Hi there", ref="r1") -> list[dict]:
    await ws.send_json_to(
        {"type": "chat.send", "conversation": conversation, "content": content, "ref": ref}
    )
    return await receive_until(ws, is_done)


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
    there (that hop queued every delta behind all database work); commands do."""
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
    # The chat.send command still closes stale connections first; the 60 deltas,
    # the messages and `done` do not.
    assert hops == [1]


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


# ---- watching from a second socket ----------------------------------------------


async def test_second_socket_gets_snapshot_then_live_deltas_without_gap(alice, alice_ws, emulator):
    reply = "".join(f"{i:04d}" for i in range(300))
    await emulator.anext(reply=reply, chunk_chars=4, interval_ms=5)
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "count"})
    frames = await receive_until(alice_ws, lambda f: f["type"] == "delta" and f["seq"] >= 20)
    conversation_id = frames[0]["conversation"]["id"]

    second = await connect(alice)
    assert (await second.connect())[0]
    try:
        await second.send_json_to({"type": "conversation.open", "conversation": conversation_id})
        seen = await receive_until(second, is_done)
        assert seen[0]["type"] == "history"
        snapshot = next(f for f in seen if f["type"] == "snapshot")
        text, seq = snapshot["content"], snapshot["seq"]
        for frame in seen[seen.index(snapshot) + 1 :]:
            if frame["type"] == "delta":
                assert frame["seq"] == seq + 1
                seq = frame["seq"]
                text += frame["text"]
        assert text == reply == seen[-1]["content"]
    finally:
        await second.disconnect()
    await receive_until(alice_ws, is_done)


async def test_history_of_a_finished_conversation(alice_ws, emulator):
    frames = await send_and_finish(alice_ws, content="Remember me")
    conversation_id = frames[0]["conversation"]["id"]
    await alice_ws.send_json_to({"type": "conversation.open", "conversation": conversation_id})
    history = await alice_ws.receive_json_from()
    assert history["type"] == "history"
    assert history["conversation"]["id"] == conversation_id
    assert [(m["role"], m["status"]) for m in history["messages"]] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert history["messages"][1]["content"] == frames[-1]["content"]


async def test_regenerate_after_failure_gives_a_new_answer(alice_ws, emulator):
    await emulator.anext(fault="text_500")
    failed = await send_and_finish(alice_ws, content="Try again")
    assert failed[-1]["status"] == "failed"
    await emulator.anext(reply="Now it works.")
    await alice_ws.send_json_to({"type": "chat.regenerate", "message": failed[-1]["message"]})
    frames = await receive_until(alice_ws, is_done)
    assert frames[0]["type"] == "message"
    assert frames[0]["message"]["parent"] == failed[1]["message"]["id"]
    assert frames[-1]["status"] == "complete"
    assert frames[-1]["content"] == "Now it works."
    prompts = (await emulator.astats())["last_prompts"]
    assert prompts[-1] == "Try again"


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


# ---- branches ------------------------------------------------------------------------


async def test_edit_and_resend_starts_a_branch_and_keeps_the_old_one(alice_ws, emulator):
    await emulator.anext(reply="Answer one.")
    first = await send_and_finish(alice_ws, content="Question one")
    conversation_id = first[0]["conversation"]["id"]
    await emulator.anext(reply="Answer two.")
    second = await send_and_finish(alice_ws, conversation=conversation_id, content="Question two")
    # Edit "Question two": resend after the first answer.
    await emulator.anext(reply="Answer two, edited.")
    await alice_ws.send_json_to(
        {"type": "chat.send", "conversation": conversation_id, "content": "Question two, edited",
         "parent": first[-1]["message"]}
    )
    edited = await receive_until(alice_ws, is_done)
    assert edited[0]["message"]["parent"] == first[-1]["message"]
    prompts = (await emulator.astats())["last_prompts"]
    assert prompts[-1] == (
        "User: Question one\nAssistant: Answer one.\nUser: Question two, edited\nAssistant:"
    )
    # Both branches are kept.
    assert await Message.objects.filter(conversation_id=conversation_id).acount() == 6
    old = await Message.objects.aget(pk=second[-1]["message"])
    assert old.content == "Answer two."


async def test_resend_from_the_root_and_bad_parents(alice_ws, bob, emulator):
    first = await send_and_finish(alice_ws, content="Original")
    conversation_id = first[0]["conversation"]["id"]
    await alice_ws.send_json_to(
        {"type": "chat.send", "conversation": conversation_id, "content": "Rewritten", "parent": None}
    )
    frames = await receive_until(alice_ws, is_done)
    assert frames[0]["message"]["parent"] is None
    assert (await emulator.astats())["last_prompts"][-1] == "Rewritten"
    for frame, code in [
        ({"parent": 999999}, "not_found"),
        ({"parent": "x"}, "bad_field"),
        ({"conversation": None, "parent": first[1]["message"]["id"]}, "bad_field"),
        ({"model": 5}, "bad_field"),
    ]:
        await alice_ws.send_json_to(
            {"type": "chat.send", "conversation": conversation_id, "content": "x", **frame}
        )
        reply = await alice_ws.receive_json_from()
        assert reply["code"] == code, frame


# ---- titles ---------------------------------------------------------------------------


async def test_first_answer_gives_the_conversation_a_short_title(alice_ws, emulator):
    await emulator.anext(reply="## Decorators in Python\n\nA decorator wraps a function.")
    frames = await send_and_finish(
        alice_ws, content="Could you explain how Python decorators work with arguments, please?"
    )
    conversation_id = frames[0]["conversation"]["id"]
    assert frames[0]["conversation"]["title"].startswith("Could you explain how Python")
    retitled = await alice_ws.receive_json_from(timeout=5)
    assert retitled["type"] == "conversation"
    assert retitled["conversation"]["id"] == conversation_id
    assert retitled["conversation"]["title"].startswith("How Python decorators work")
    assert (await Conversation.objects.aget(pk=conversation_id)).title == retitled["conversation"]["title"]
    # A second answer does not retitle.
    await send_and_finish(alice_ws, conversation=conversation_id, content="And classes?")
    assert await alice_ws.receive_nothing(timeout=0.3)


async def test_a_title_the_user_chose_is_kept(alice_ws, emulator):
    await emulator.anext(reply="x " * 100, interval_ms=5, chunk_chars=4)
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "Something long"})
    frames = await receive_until(alice_ws, lambda f: f["type"] == "delta")
    conversation_id = frames[0]["conversation"]["id"]
    await Conversation.objects.filter(pk=conversation_id).aupdate(title="My own title")
    await receive_until(alice_ws, is_done)
    assert await alice_ws.receive_nothing(timeout=0.3)
    assert (await Conversation.objects.aget(pk=conversation_id)).title == "My own title"


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


async def test_a_chat_created_empty_gets_titled_by_its_first_exchange(alice, alice_ws, emulator):
    conversation = await Conversation.objects.acreate(owner=alice, system_prompt="Be brief.")
    await emulator.anext(reply="## Tides\n\nThe moon pulls the sea.")
    await alice_ws.send_json_to(
        {"type": "chat.send", "conversation": conversation.pk, "content": "Explain the tides to me"}
    )
    frames = await receive_until(alice_ws, is_done)
    titled = next(f for f in frames if f["type"] == "conversation")
    assert titled["conversation"]["title"] == "Explain the tides to me"
    retitled = await alice_ws.receive_json_from(timeout=5)
    assert retitled["type"] == "conversation"
    assert retitled["conversation"]["title"] == "The tides"
    assert (await emulator.astats())["last_prompts"][-1] == (
        "System: Be brief.\nUser: Explain the tides to me\nAssistant:"
    )


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
