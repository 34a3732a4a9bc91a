"""The world the fuzzing runs in: Alice fuzzes, Bob has secrets (a canary string),
and the limits the tests check frames against.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from chat import generation as gen
from chat.consumers import ChatConsumer
from chat.models import Conversation, Message
from tests.fixtures.emulator import REPO_ROOT

MAX_FRAME = ChatConsumer.max_frame_chars
MAX_CHARS = django_settings.CHAT_MAX_MESSAGE_CHARS
TYPES = ("chat.send", "chat.stop", "chat.regenerate", "conversation.open")
# Codes a frame can get for text that cannot be stored or sent (NUL, lone surrogates).
UNSTORABLE = {"bad_json", "bad_field"}


def documented_error_codes() -> set[str]:
    """The codes of the "Error codes" table of the protocol documentation."""
    text = (REPO_ROOT / "docs" / "websocket-protocol.md").read_text()
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


KNOWN_CODES = documented_error_codes()


# ---- the world: Alice fuzzes, Bob has secrets ----------------------------------------


@dataclass
class World:
    alice: object
    bob: object
    canary: str
    alice_conversation: int
    alice_messages: list[int]
    bob_conversations: set[int]
    bob_messages: set[int]
    bob_live_answer: int
    emulator: object = None

    @property
    def known_ids(self) -> list[int]:
        return sorted({self.alice_conversation, *self.alice_messages, *self.bob_conversations, *self.bob_messages})


def canary_stream(canary: str):
    """Bob's answer: canary text for as long as it runs (until stopped or shut down)."""

    async def stream(*, model=None, messages=None):
        n = 0
        while True:
            n += 1
            yield f"{canary} {n} "
            await asyncio.sleep(0.05)

    return stream


@pytest.fixture
async def world(django_user_model, emulator, settings) -> World:
    # The per-user limits (tests/test_limits.py) would refuse a fuzzer's pace;
    # here every refusal must come from the frame itself.
    settings.CHAT_MESSAGES_PER_MINUTE = 10**6
    settings.CHAT_CONCURRENT_ANSWERS = 10**6
    settings.CHAT_DAILY_ANSWER_CHARS = 10**12
    alice = await django_user_model.objects.acreate(username="alice")
    bob = await django_user_model.objects.acreate(username="bob")
    canary = f"CANARY{uuid.uuid4().hex}"

    conversation = await Conversation.objects.acreate(owner=alice, title="Alice's own")
    question = await Message.objects.acreate(
        conversation=conversation, role=Message.Role.USER, content="Alice asks", status=Message.Status.COMPLETE
    )
    answer = await Message.objects.acreate(
        conversation=conversation, parent=question, role=Message.Role.ASSISTANT,
        content="Alice is answered", status=Message.Status.COMPLETE,
    )

    secret = await Conversation.objects.acreate(owner=bob, title=f"Bob's {canary}")
    bob_question = await Message.objects.acreate(
        conversation=secret, role=Message.Role.USER, content=f"Bob asks {canary}", status=Message.Status.COMPLETE
    )
    bob_answer = await Message.objects.acreate(
        conversation=secret, parent=bob_question, role=Message.Role.ASSISTANT,
        content=f"Bob is told {canary}", status=Message.Status.COMPLETE,
    )
    # An answer of Bob's left streaming by a dead process: the sweeper ends it
    # (its `done`, with the canary, goes to Bob's conversation only).
    stale = await Message.objects.acreate(
        conversation=secret, parent=bob_question, role=Message.Role.ASSISTANT,
        content=f"Bob's stale {canary}", status=Message.Status.STREAMING,
    )
    await Message.objects.filter(pk=stale.pk).aupdate(updated_at=timezone.now() - timedelta(hours=1))
    # And one streaming right now in this process.
    live_conversation = await Conversation.objects.acreate(owner=bob, title=f"Bob live {canary}")
    live_question = await Message.objects.acreate(
        conversation=live_conversation, role=Message.Role.USER, content=f"Go {canary}",
        status=Message.Status.COMPLETE,
    )
    live = await Message.objects.acreate(
        conversation=live_conversation, parent=live_question, role=Message.Role.ASSISTANT,
        content="", status=Message.Status.PENDING,
    )
    manager = gen.get_manager()
    await manager.start(
        message_id=live.pk, conversation_id=live_conversation.pk, history=[], owner_id=bob.pk,
        provider=canary_stream(canary),
    )
    yield World(
        alice=alice,
        bob=bob,
        canary=canary,
        alice_conversation=conversation.pk,
        alice_messages=[question.pk, answer.pk],
        bob_conversations={secret.pk, live_conversation.pk},
        bob_messages={bob_question.pk, bob_answer.pk, stale.pk, live_question.pk, live.pk},
        bob_live_answer=live.pk,
        emulator=emulator,
    )
    running = manager.generations.get(live.pk)
    if running is not None and running.task is not None:
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)

