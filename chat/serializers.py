"""Plain-dict views of models for websocket frames and JSON (no HTML, ever)."""

from chat.models import Conversation, Message


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def conversation_data(conversation: Conversation) -> dict:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "pinned": conversation.pinned,
    }


def message_data(message: Message) -> dict:
    return {
        "id": message.pk,
        "conversation": message.conversation_id,
        "role": message.role,
        "status": message.status,
        "content": message.content,
        "error": message.error or None,
        "parent": message.parent_id,
        # The model that wrote an answer (shown under it); the one asked for until it ends.
        "model": message.model or None,
        "created_at": _iso(message.created_at),
    }
