"""Reads. Every fetch by id takes the user and checks ownership in the same query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, Subquery

from chat.models import Conversation, Message

SIDEBAR_PAGE_SIZE = 50
SEARCH_QUERY_MAX = 200
SEARCH_RESULTS_MAX = 30
SNIPPET_CHARS = 140
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


# ---- search over a person's own conversations: titles and message text ----

@dataclass(frozen=True)
class SearchHit:
    conversation: Conversation
    snippet: str


def _uses_postgres() -> bool:
    return connection.vendor == "postgresql"


def _matching_messages(query: str):
    messages = Message.objects.filter(conversation=OuterRef("pk")).exclude(role=Message.Role.SYSTEM)
    if _uses_postgres():
        from django.contrib.postgres.search import SearchQuery, SearchVector

        return messages.annotate(
            document=SearchVector("content", config="simple")
        ).filter(document=SearchQuery(query, config="simple", search_type="websearch"))
    return messages.filter(content__icontains=query)


def _title_matches(query: str) -> Q:
    if _uses_postgres():
        from django.contrib.postgres.search import SearchQuery, SearchVector

        return Q(title_document=SearchQuery(query, config="simple", search_type="websearch"))
    return Q(title__icontains=query)


def conversation_search(*, user, query: str) -> list[SearchHit]:
    """The user's conversations whose title or messages match `query`, pinned then newest first.

    On PostgreSQL: full-text search (to_tsvector/websearch_to_tsquery with the
    language-neutral "simple" configuration, so Russian and English both match
    word for word). On SQLite: a plain case-insensitive contains. Either way one
    query returns the conversations with the text of their first matching message.
    """
    query = " ".join(query.split())[:SEARCH_QUERY_MAX]
    if not query:
        return []
    matching = _matching_messages(query)
    conversations = Conversation.objects.for_user(user)
    if _uses_postgres():
        from django.contrib.postgres.search import SearchVector

        conversations = conversations.annotate(title_document=SearchVector("title", config="simple"))
    found = (
        conversations.annotate(
            has_match=Exists(matching),
            match_text=Subquery(matching.order_by("created_at", "id").values("content")[:1]),
        )
        .filter(_title_matches(query) | Q(has_match=True))
        .order_by("-pinned", "-updated_at", "-id")
        .only("id", "title", "pinned", "created_at", "updated_at")[:SEARCH_RESULTS_MAX]
    )
    return [SearchHit(conversation=c, snippet=search_snippet(c.match_text or "", query)) for c in found]


def search_snippet(text: str, query: str) -> str:
    """A short piece of `text` around the first word of `query` it contains."""
    flat = " ".join(text.split())
    if not flat:
        return ""
    lower = flat.lower()
    positions = [lower.find(word.lower()) for word in query.split() if word.strip('"-')]
    positions = [p for p in positions if p >= 0]
    at = min(positions) if positions else 0
    start = max(0, at - SNIPPET_CHARS // 3)
    piece = flat[start : start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(flat) else "")


def conversation_stats_for_admin(queryset):
    """Annotate a conversation queryset with its message count (one query, no N+1)."""
    return queryset.annotate(message_count=Count("messages"))


async def message_states(*, message_ids: list[int]) -> dict[int, dict]:
    """Status, text and error of answers by id, in one query: what a socket that
    lost track of an answer needs to end it. No owner check: called only for
    answers of a conversation the socket's user already opened."""
    rows = Message.objects.filter(pk__in=message_ids).values("pk", "status", "content", "error")
    return {row["pk"]: row async for row in rows}
