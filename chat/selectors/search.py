"""Search over a person's own conversations: titles and message text."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Exists, OuterRef, Q, Subquery

from chat.models import Conversation, Message

SEARCH_QUERY_MAX = 200
SEARCH_RESULTS_MAX = 30
SNIPPET_CHARS = 140


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
        from django.contrib.postgres.search import SearchQuery

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
