"""Who read whose conversation in the admin: one TranscriptView row per reading."""

from __future__ import annotations

from collections.abc import Iterable

from chat.models import Conversation, TranscriptView


def transcript_views_record(
    *, viewer, conversations: Iterable[Conversation], action: str = "transcript"
) -> int:
    """Record that `viewer` (staff) read `conversations`; their own are not recorded.

    Each conversation needs its owner loaded (select_related). Returns how many
    rows were written (one INSERT for all).
    """
    rows = [
        TranscriptView(
            viewer=viewer,
            viewer_name=viewer.get_username(),
            owner_id=conversation.owner_id,
            owner_name=conversation.owner.get_username(),
            conversation=conversation,
            conversation_title=str(conversation)[:200],
            action=action,
        )
        for conversation in conversations
        if conversation.owner_id != viewer.pk
    ]
    TranscriptView.objects.bulk_create(rows)
    return len(rows)
