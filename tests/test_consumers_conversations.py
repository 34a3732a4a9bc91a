"""The chat websocket against the real emulator: following a conversation from a second
socket, history, regenerate, branches and titles."""

import asyncio

import pytest
from django.db import DatabaseError

from chat.models import Conversation, Message
from tests.ws import connect, is_done, receive_until, send_and_finish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]


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


async def test_done_does_not_wait_for_the_title(alice_ws, emulator, monkeypatch):
    """`done` (the person may type again) goes out once the answer is saved;
    the short title is written after it, in its own trip to the database."""
    from chat.services import answer_batch

    titling, release = asyncio.Event(), asyncio.Event()

    async def slow_title(*, conversation_ids):
        titling.set()
        await release.wait()
        return await autotitle(conversation_ids=conversation_ids)

    autotitle = answer_batch.conversations_autotitle
    monkeypatch.setattr(answer_batch, "conversations_autotitle", slow_title)
    await emulator.anext(reply="## Tides\n\nThe moon pulls the sea.")
    frames = await send_and_finish(alice_ws, content="Explain the tides to me")
    assert frames[-1]["status"] == "complete"
    await asyncio.wait_for(titling.wait(), 5)  # the title is being written; `done` is already here
    assert await alice_ws.receive_nothing(timeout=0.2)
    release.set()
    retitled = await alice_ws.receive_json_from(timeout=5)
    assert retitled["type"] == "conversation" and retitled["conversation"]["title"] == "The tides"


async def test_a_failed_title_leaves_the_answer_complete(alice_ws, emulator, monkeypatch, caplog):
    from chat.services import answer_batch

    async def broken_title(*, conversation_ids):
        raise DatabaseError("the database went away while titling")

    monkeypatch.setattr(answer_batch, "conversations_autotitle", broken_title)
    frames = await send_and_finish(alice_ws, content="Explain the tides to me")
    assert frames[-1]["status"] == "complete"
    assert await alice_ws.receive_nothing(timeout=0.3)  # no retitle
    message = await Message.objects.aget(pk=frames[-1]["message"])
    assert message.status == Message.Status.COMPLETE and message.content == frames[-1]["content"]
    assert "titling conversation" in caplog.text


async def test_a_title_the_user_chose_is_kept(alice_ws, emulator):
    await emulator.anext(reply="x " * 100, interval_ms=5, chunk_chars=4)
    await alice_ws.send_json_to({"type": "chat.send", "conversation": None, "content": "Something long"})
    frames = await receive_until(alice_ws, lambda f: f["type"] == "delta")
    conversation_id = frames[0]["conversation"]["id"]
    await Conversation.objects.filter(pk=conversation_id).aupdate(title="My own title")
    await receive_until(alice_ws, is_done)
    assert await alice_ws.receive_nothing(timeout=0.3)
    assert (await Conversation.objects.aget(pk=conversation_id)).title == "My own title"


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
