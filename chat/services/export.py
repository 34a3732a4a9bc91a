"""Read-only copies of a conversation: the Markdown and JSON export files and the
branch a reader sees (the shared conversation itself is read in chat.selectors)."""

from __future__ import annotations

import json

from django.utils import timezone

from chat.models import Conversation, Message
from chat.services.conversation_edits import EXPORT_FORMAT, EXPORT_VERSION
from chat.services.history import branch_messages


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def newest_branch(*, messages: list[Message]) -> list[Message]:
    """The path a reader sees by default: from the root to the newest message."""
    if not messages:
        return []
    newest = max(messages, key=lambda m: (m.created_at, m.pk))
    return branch_messages(messages=messages, leaf_id=newest.pk)


def export_filename(conversation: Conversation, extension: str) -> str:
    base = "".join(c if c.isalnum() or c in "-_" else "-" for c in (conversation.title or "chat"))
    base = "-".join(part for part in base.split("-") if part)[:60] or "chat"
    return f"{base}.{extension}"


def conversation_export_json(*, conversation: Conversation, messages: list[Message]) -> str:
    """Every message with its parent link (all branches): what import reads back."""
    data = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "created_at": _iso(conversation.created_at),
        "exported_at": _iso(timezone.now()),
        "messages": [
            {
                "id": m.pk,
                "parent": m.parent_id,
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "error": m.error or None,
                "model": m.model,
                "created_at": _iso(m.created_at),
            }
            for m in messages
            if m.role != Message.Role.SYSTEM
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


ROLE_HEADINGS = {Message.Role.USER: "You", Message.Role.ASSISTANT: "Assistant"}


def conversation_export_markdown(*, conversation: Conversation, messages: list[Message]) -> str:
    """The newest branch as a readable Markdown document."""
    lines = [f"# {conversation.title or 'Untitled chat'}", ""]
    if conversation.system_prompt.strip():
        lines += ["> **System prompt:** " + conversation.system_prompt.strip().replace("\n", "\n> "), ""]
    for message in newest_branch(messages=messages):
        if message.role not in ROLE_HEADINGS:
            continue
        lines += [f"## {ROLE_HEADINGS[message.role]}", "", message.content.rstrip(), ""]
        if message.role == Message.Role.ASSISTANT and message.status != Message.Status.COMPLETE:
            note = f"*({message.get_status_display()}"
            note += f": {message.error})*" if message.error else ")*"
            lines += [note, ""]
    return "\n".join(lines).rstrip() + "\n"
