"""Starting an answer: the upstream is asked while the database saves the rows."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat import consumers
from chat.models import AccountSettings, Message
from chat.services import answer_batch
from tests.ws import connect, is_done, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]


@pytest.fixture
async def carol(make_user):
    return await sync_to_async(make_user)("carol")


async def test_a_new_chat_asks_the_upstream_before_its_rows_are_saved(carol, emulator, monkeypatch):
    real = answer_batch.answers_begin_new
    asked_first = []

    async def slow_begin(**kwargs):
        # The rows are written only once the upstream has been asked for the
        # answer: without the early request this would wait forever.
        deadline = asyncio.get_running_loop().time() + 10
        while (await emulator.astats())["texts"] < 1:
            assert asyncio.get_running_loop().time() < deadline, "the upstream was not asked early"
            await asyncio.sleep(0.01)
        asked_first.append(True)
        return await real(**kwargs)

    monkeypatch.setattr(answer_batch, "answers_begin_new", slow_begin)
    await emulator.anext(reply="early bird")
    ws = await connect(carol)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "hello"})
        frames = await receive_until(ws, is_done)
    finally:
        await ws.disconnect()
    assert asked_first == [True]
    assert frames[-1]["status"] == "complete" and frames[-1]["content"] == "early bird"
    assert (await emulator.astats())["texts"] == 1  # one request, used for the answer


async def test_an_existing_chat_waits_for_its_history(carol, emulator, monkeypatch):
    ws = await connect(carol)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "first"})
        conversation = (await receive_until(ws, is_done))[0]["conversation"]["id"]
        texts = (await emulator.astats())["texts"]
        real = consumers.answer_begin
        seen = []

        async def watching_begin(**kwargs):
            seen.append((await emulator.astats())["texts"])
            return await real(**kwargs)

        monkeypatch.setattr(consumers, "answer_begin", watching_begin)
        await ws.send_json_to({"type": "chat.send", "conversation": conversation, "content": "second"})
        frames = await receive_until(ws, is_done)
    finally:
        await ws.disconnect()
    assert seen == [texts], "no request before the history was read"
    assert frames[-1]["status"] == "complete"
    prompt = (await emulator.astats())["last_prompts"][-1]
    assert "first" in prompt and "second" in prompt


async def test_account_instructions_replace_the_early_request(carol, emulator):
    await AccountSettings.objects.acreate(user=carol, custom_instructions="Answer like a pirate.")
    ws = await connect(carol)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "ahoy?"})
        frames = await receive_until(ws, is_done)
    finally:
        await ws.disconnect()
    assert frames[-1]["status"] == "complete"
    answer = await Message.objects.aget(pk=frames[-1]["message"])
    stats = await emulator.astats()
    # The early request (the message alone) was dropped; the answer was asked
    # again with the chat's system prompt.
    assert "Answer like a pirate." in stats["last_prompts"][-1]
    assert answer.content and answer.status == "complete"
