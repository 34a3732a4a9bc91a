"""Conversations, branches and staff users for the admin tests."""

from __future__ import annotations

import datetime as dt

from chat.models import Conversation, Message


def make_conversations(owner, count: int, messages_each: int = 3) -> list[Conversation]:
    """`count` conversations of `messages_each` messages, user and assistant in turn,
    the last one failed."""
    conversations = []
    for i in range(count):
        conversation = Conversation.objects.create(owner=owner, title=f"Talk {i} about herons")
        parent = None
        for j in range(messages_each):
            parent = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role="user" if j % 2 == 0 else "assistant",
                content=f"message {j} of talk {i}: kingfisher",
                status="complete" if j < messages_each - 1 else "failed",
                error="" if j < messages_each - 1 else "The provider failed (HTTP 500).",
            )
        conversations.append(conversation)
    return conversations


def message(conversation, role: str, content: str, *, parent=None, at: dt.datetime | None = None, **fields) -> Message:
    row = Message.objects.create(conversation=conversation, parent=parent, role=role, content=content, **fields)
    if at is not None:  # created_at is auto_now_add: set it afterwards
        Message.objects.filter(pk=row.pk).update(created_at=at)
        row.created_at = at
    return row


def branched_conversation(owner) -> tuple[Conversation, dict[str, Message]]:
    """q1 → a1 (stopped) and a2 (regenerated, complete) → q2 → a3; then q1 edited
    into q1b → a4, the newest message: the user sees q1b → a4."""
    conversation = Conversation.objects.create(owner=owner, title="Branches", model="Emu/gpt-4o-mini")
    base = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
    at = iter(base + dt.timedelta(minutes=n) for n in range(100))
    m = {}
    m["q1"] = message(conversation, "user", "First question", at=next(at))
    m["a1"] = message(conversation, "assistant", "Stopped answ", parent=m["q1"], at=next(at), status="stopped")
    m["a2"] = message(conversation, "assistant", "Second answer", parent=m["q1"], at=next(at))
    m["q2"] = message(conversation, "user", "Follow-up", parent=m["a2"], at=next(at))
    m["a3"] = message(conversation, "assistant", "Follow-up answer", parent=m["q2"], at=next(at))
    m["q1b"] = message(conversation, "user", "First question, edited", at=next(at))
    m["a4"] = message(
        conversation, "assistant", "Answer to the edit", parent=m["q1b"], at=next(at),
        model="Emu/gpt-4o-mini", provider="Emu", duration_ms=1234, first_delta_ms=56,
        prompt_tokens=7, answer_tokens=5, tokens_estimated=False,
    )  # fmt: skip
    return conversation, m
