"""Reads for the admin's transcript page: a conversation's messages as a tree, one page at a time.

Staff read every conversation here, so these reads take no user: the admin view
checks the staff permission, and chat.services.audit records the reading.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.paginator import Page, Paginator

from chat.models import Conversation, Message
from chat.services.export import newest_branch

# Messages per page: a long conversation is read in pages, not one endless page.
TRANSCRIPT_PAGE_SIZE = 40


@dataclass
class TranscriptEntry:
    """One message as the transcript shows it.

    `on_path`: on the branch the user sees (root to the newest message).
    `depth`: how many alternatives away from that branch it is (0 on it).
    `alternative`: (k, n) when this message is the k-th of n versions of the same
    turn (an edit or a regenerated answer), else None.
    """

    message: Message
    on_path: bool
    depth: int
    alternative: tuple[int, int] | None
    content: str = ""


def transcript_entries(*, messages: list[Message]) -> list[TranscriptEntry]:
    """Every message, depth first in the order written: each version of a turn is
    followed by what was said after it, before the next version starts."""
    if not messages:
        return []
    ids = {m.pk for m in messages}
    children: dict[int | None, list[Message]] = {}
    for message in sorted(messages, key=lambda m: (m.created_at, m.pk)):
        parent = message.parent_id if message.parent_id in ids else None
        children.setdefault(parent, []).append(message)
    path = {m.pk for m in newest_branch(messages=messages)}
    entries: list[TranscriptEntry] = []
    # An explicit stack: a conversation can be thousands of messages deep.
    stack: list[tuple[Message, int, tuple[int, int] | None]] = []

    def push_children(parent_id: int | None, depth: int) -> None:
        siblings = children.get(parent_id, [])
        count = len(siblings)
        for index in range(count - 1, -1, -1):  # reversed: the first is popped first
            child = siblings[index]
            branches_off = count > 1 and child.pk not in path
            stack.append((child, depth + branches_off, (index + 1, count) if count > 1 else None))

    push_children(None, 0)
    seen: set[int] = set()
    while stack:
        message, depth, alternative = stack.pop()
        if message.pk in seen:
            continue
        seen.add(message.pk)
        entries.append(TranscriptEntry(message, message.pk in path, depth, alternative))
        push_children(message.pk, depth)
    return entries


def transcript_page(*, conversation: Conversation, page: int | str | None) -> Page:
    """One page of the conversation's transcript, with the text of its messages.

    Two queries: the tree without the texts, then the texts of this page only.
    """
    messages = list(conversation.messages.defer("content").order_by("created_at", "id"))
    entries = transcript_entries(messages=messages)
    result = Paginator(entries, TRANSCRIPT_PAGE_SIZE).get_page(page)
    wanted = [entry.message.pk for entry in result.object_list]
    texts = dict(Message.objects.filter(pk__in=wanted).values_list("pk", "content"))
    for entry in result.object_list:
        entry.content = texts.get(entry.message.pk, "")
    return result
