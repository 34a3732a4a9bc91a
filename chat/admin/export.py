"""The admin's export action: one JSON and one Markdown file per conversation, in a zip."""

from __future__ import annotations

import io
import zipfile

from django.http import HttpResponse
from django.utils import timezone

from chat.models import Conversation, Message
from chat.services.export import conversation_export_json, conversation_export_markdown, export_filename


def conversations_export_zip(*, conversations: list[Conversation]) -> bytes:
    """The zip of `conversations`: `<id>-<title>.json` (every branch, what import
    reads) and `<id>-<title>.md` (the branch the user sees) for each. Two queries."""
    by_conversation: dict[int, list[Message]] = {c.pk: [] for c in conversations}
    for message in Message.objects.filter(conversation__in=by_conversation).order_by("created_at", "id"):
        by_conversation[message.conversation_id].append(message)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for conversation in conversations:
            messages = by_conversation[conversation.pk]
            # The id keeps two chats with the same title apart.
            for extension, text in (
                ("json", conversation_export_json(conversation=conversation, messages=messages)),
                ("md", conversation_export_markdown(conversation=conversation, messages=messages)),
            ):
                name = f"{conversation.pk}-{export_filename(conversation, extension)}"
                archive.writestr(f"{conversation.owner.get_username()}/{name}", text)
    return buffer.getvalue()


def conversations_export_response(*, conversations: list[Conversation]) -> HttpResponse:
    response = HttpResponse(conversations_export_zip(conversations=conversations), content_type="application/zip")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="conversations-{stamp}.zip"'
    return response
