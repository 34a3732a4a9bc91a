"""New chats started together are written together (chat.services.answer_batch)."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.models import AccountSettings, Conversation, Message
from chat.services.answer_batch import NewChat, answers_begin_new, new_chat_queue
from chat.services.limits import LimitExceeded
from tests.ws import connect, is_done, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]


def test_a_batch_writes_each_chat_as_answer_begin_would(make_user, settings, django_assert_max_num_queries):
    settings.CHAT_CONCURRENT_ANSWERS = 2
    ann, bob = make_user("ann"), make_user("bob")
    AccountSettings.objects.create(user=bob, default_model="GPTalk/gpt-4", custom_instructions="Be brief.")
    chats = [
        NewChat(user=ann, content="Hello **there**, first"),
        NewChat(user=bob, content="bob asks", model=""),
        NewChat(user=ann, content="ann again"),
        NewChat(user=ann, content="one too many"),  # a third answer at once: refused
        NewChat(user=bob, content="x" * (settings.CHAT_MAX_MESSAGE_CHARS + 1)),
    ]
    # Limits, usage, defaults, then the three inserts (plus the transaction):
    # the same for five chats as for one.
    with django_assert_max_num_queries(9):
        results = answers_begin_new.func(chats=chats)
    first, bobs, second, refused, too_long = results
    assert isinstance(refused, LimitExceeded) and refused.code == "too_many_answers"
    assert isinstance(too_long, LimitExceeded) and too_long.code == "too_long"
    assert first.created and first.conversation.owner_id == ann.pk
    assert first.user_message.content == "Hello **there**, first" and first.user_message.parent_id is None
    assert first.assistant.parent_id == first.user_message.pk and first.assistant.status == "pending"
    assert first.history == [{"role": "user", "content": "Hello **there**, first"}]
    assert first.allowance.starts == 1 and second.allowance.starts == 0
    assert bobs.conversation.system_prompt == "Be brief." and bobs.assistant.model == "GPTalk/gpt-4"
    assert bobs.history[0] == {"role": "system", "content": "Be brief."}
    assert Conversation.objects.count() == 3 and Message.objects.count() == 6
    saved = Conversation.objects.get(pk=first.conversation.pk)
    assert saved.title == first.conversation.title and saved.created_at is not None


async def test_starts_that_arrive_together_share_trips_to_the_database(make_user, emulator):
    users = [await sync_to_async(make_user)(f"crowd{i}") for i in range(12)]
    queue = new_chat_queue()
    before = queue.batches
    begun = await asyncio.gather(*(queue.begin(NewChat(user=u, content=f"q{i}")) for i, u in enumerate(users)))
    assert len({b.conversation.pk for b in begun}) == 12
    assert 1 <= queue.batches - before < 12


async def test_new_chats_through_the_socket_use_the_batch(make_user, emulator):
    user = await sync_to_async(make_user)("dora")
    ws = await connect(user)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "hi", "ref": "r"})
        frames = await receive_until(ws, is_done)
    finally:
        await ws.disconnect()
    assert [f["type"] for f in frames[:3]] == ["conversation", "message", "message"]
    assert frames[1]["ref"] == "r" and frames[-1]["status"] == "complete"
