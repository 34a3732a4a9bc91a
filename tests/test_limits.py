"""Per-user limits: a clear error frame, no upstream call, nothing saved or lost."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.urls import reverse

from chat.models import Message, UsageLimit
from chat.services.limits import limits_for
from tests.ws import connect, is_done, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]


@pytest.fixture
async def user(make_user):
    return await sync_to_async(make_user)("limited")


@pytest.fixture
async def ws(user, emulator):
    communicator = await connect(user)
    assert (await communicator.connect())[0]
    yield communicator
    await communicator.disconnect()


async def send(ws, content="hello", conversation=None):
    await ws.send_json_to({"type": "chat.send", "conversation": conversation, "content": content})
    return await receive_until(ws, lambda f: f["type"] in ("done", "error"))


async def assert_refused(ws, emulator, code, **send_kwargs):
    before_messages = await Message.objects.acount()
    before_texts = (await emulator.astats())["texts"]
    frames = await send(ws, **send_kwargs)
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == code, frames
    assert frames[-1]["detail"]
    assert await Message.objects.acount() == before_messages, "nothing saved"
    assert (await emulator.astats())["texts"] == before_texts, "no upstream call"
    return frames[-1]


async def test_messages_per_minute(ws, emulator, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 2
    assert (await send(ws))[-1]["status"] == "complete"
    assert (await send(ws))[-1]["status"] == "complete"
    error = await assert_refused(ws, emulator, "rate_limited")
    assert "2 a minute" in error["detail"]
    # The socket stays usable and earlier answers are intact.
    assert await Message.objects.filter(role="assistant", status="complete").acount() == 2


async def test_concurrent_answers(ws, emulator, settings):
    settings.CHAT_CONCURRENT_ANSWERS = 1
    await emulator.anext(reply="s" * 2000, chunk_chars=4, interval_ms=10)
    await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "slow"})
    await receive_until(ws, lambda f: f["type"] == "delta")
    error = await assert_refused(ws, emulator, "too_many_answers", content="another")
    assert "at most 1" in error["detail"]
    frames = await receive_until(ws, is_done, timeout=30)
    assert frames[-1]["status"] == "complete"


async def test_daily_answer_characters(ws, emulator, settings):
    settings.CHAT_DAILY_ANSWER_CHARS = 50
    await emulator.anext(reply="q" * 60)
    assert (await send(ws))[-1]["status"] == "complete"
    error = await assert_refused(ws, emulator, "quota_exceeded")
    assert "midnight UTC" in error["detail"]


async def test_regenerate_is_limited_too(ws, emulator, settings):
    frames = await send(ws)
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    before = await Message.objects.acount()
    await ws.send_json_to({"type": "chat.regenerate", "message": frames[-1]["message"]})
    error = await ws.receive_json_from()
    assert error["code"] == "rate_limited"
    assert await Message.objects.acount() == before


async def test_user_override_beats_group_and_default(ws, user, emulator, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 1000
    group = await Group.objects.acreate(name="generous")
    await sync_to_async(user.groups.add)(group)
    await UsageLimit.objects.acreate(group=group, max_message_chars=500, messages_per_minute=99)
    await UsageLimit.objects.acreate(user=user, max_message_chars=5)
    limits = await limits_for(user=user)
    assert limits.max_message_chars == 5
    assert limits.messages_per_minute == 99
    await assert_refused(ws, emulator, "too_long", content="123456")
    assert (await send(ws, content="12345"))[-1]["status"] == "complete"


async def test_most_generous_group_wins_and_nothing_exceeds_the_socket_limit(user, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 1000
    settings.CHAT_CONCURRENT_ANSWERS = 3
    small, big = await Group.objects.acreate(name="small"), await Group.objects.acreate(name="big")
    await sync_to_async(user.groups.add)(small, big)
    await UsageLimit.objects.acreate(group=small, concurrent_answers=1, max_message_chars=10_000_000)
    await UsageLimit.objects.acreate(group=big, concurrent_answers=4)
    limits = await limits_for(user=user)
    assert limits.concurrent_answers == 4
    assert limits.max_message_chars == 1000


def test_staff_edit_limits_in_the_admin(client, make_user):
    staff = make_user("boss", is_staff=True, is_superuser=True)
    target = make_user("target")
    client.force_login(staff)
    url = reverse("admin:chat_usagelimit_add")
    assert client.get(url).status_code == 200
    response = client.post(url, {"user": target.pk, "messages_per_minute": 3})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert UsageLimit.objects.get(user=target).messages_per_minute == 3
    # Neither a user nor a group: refused with a message, nothing saved.
    response = client.post(url, {"concurrent_answers": 2})
    assert response.status_code == 200
    assert UsageLimit.objects.count() == 1
    plain = make_user("plain")
    client.force_login(plain)
    assert client.get(url).status_code == 302
