"""Reads (writes live in chat/services/). Every fetch by id takes the user and checks
ownership in the same query.

This module: conversations and messages (the sidebar pages, one conversation, its
messages, a shared conversation). Themed reads beside it: `accounts` (a person's
defaults for new chats), `search` (a person's own conversations by title and
text), `transcript` (the admin's transcript pages), `usage` (the admin's usage
reports).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q

from chat.models import Conversation, Message

SIDEBAR_PAGE_SIZE = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SIDEBAR_FIELDS = ("id", "title", "pinned", "created_at", "updated_at")


class NotFound(Exception):
    """No such object among the user's own: the same whether it is missing or someone else's."""


class InvalidCursor(ValueError):
    """A `before` cursor that conversation_page did not hand out."""


def conversation_list(*, user) -> list[Conversation]:
    """All of the user's conversations: pinned first, then newest first."""
    return list(
        Conversation.objects.for_user(user)
        .order_by("-pinned", "-updated_at", "-id")
        .only(*_SIDEBAR_FIELDS)
    )


@dataclass(frozen=True)
class ConversationPage:
    conversations: list[Conversation]
    next_cursor: str | None  # `before` of the next page; None after the last one


def _cursor_of(conversation: Conversation) -> str:
    micros = (conversation.updated_at - _EPOCH) // timedelta(microseconds=1)
    return f"{int(conversation.pinned)}-{micros}-{conversation.pk}"


def _after_cursor(cursor: str) -> Q:
    """Rows that come after `cursor` in (-pinned, -updated_at, -id) order."""
    try:
        pinned, micros, pk = (int(part) for part in cursor.split("-"))
        if pinned not in (0, 1):
            raise ValueError(pinned)
        updated_at = _EPOCH + timedelta(microseconds=micros)
    except (ValueError, OverflowError):
        raise InvalidCursor(cursor) from None
    older = Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, id__lt=pk)
    after = Q(pinned=bool(pinned)) & older
    return after | Q(pinned=False) if pinned else after


def conversation_page(
    *, user, before: str | None = None, size: int = SIDEBAR_PAGE_SIZE
) -> ConversationPage:
    """One page of the sidebar, in one query: pinned first, then newest first.
    Keyset pagination: `before` is the cursor the previous page returned (no
    OFFSET, and a chat created meanwhile does not shift the later pages)."""
    rows = Conversation.objects.for_user(user).order_by("-pinned", "-updated_at", "-id")
    if before:
        rows = rows.filter(_after_cursor(before))
    found = list(rows.only(*_SIDEBAR_FIELDS)[: size + 1])
    more = len(found) > size
    found = found[:size]
    return ConversationPage(conversations=found, next_cursor=_cursor_of(found[-1]) if more else None)


def conversation_get(*, user, conversation_id: int) -> Conversation:
    try:
        return Conversation.objects.for_user(user).get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Conversation {conversation_id} was not found.") from None


async def aconversation_get(*, user, conversation_id: int) -> Conversation:
    try:
        return await Conversation.objects.for_user(user).aget(pk=conversation_id)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Conversation {conversation_id} was not found.") from None


def message_list(*, conversation: Conversation) -> list[Message]:
    """All messages of a conversation the caller already fetched through conversation_get."""
    return list(conversation.messages.order_by("created_at", "id"))


async def amessage_list(*, conversation: Conversation) -> list[Message]:
    return [m async for m in conversation.messages.order_by("created_at", "id")]


async def amessage_get(*, user, message_id: int) -> Message:
    try:
        return await Message.objects.for_user(user).select_related("conversation").aget(
            pk=message_id
        )
    except (Message.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"Message {message_id} was not found.") from None


def shared_conversation_get(*, token: str) -> Conversation | None:
    """The conversation shared under `token`, or None (never shared, or revoked).
    The one read without an owner: the token is the reader's right to see it."""
    if not token or len(token) > 64:
        return None
    return Conversation.objects.filter(share_token=token).first()


async def message_states(*, message_ids: list[int]) -> dict[int, dict]:
    """Status, text and error of answers by id, in one query: what a socket that
    lost track of an answer needs to end it. No owner check: called only for
    answers of a conversation the socket's user already opened."""
    rows = Message.objects.filter(pk__in=message_ids).values("pk", "status", "content", "error")
    return {row["pk"]: row async for row in rows}
