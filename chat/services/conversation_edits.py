"""Writes a person makes on their own conversations: rename, delete, pin, the
system prompt and model, share links, and importing an export file.

Callers fetch the conversation with chat.selectors.conversation_get(user=...)
first, so every function here acts on a conversation already known to be the
caller's. Import validates the file strictly and never reuses ids from it.
"""

from __future__ import annotations

import json
import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.models import MODEL_ID_MAX, Conversation, Message
from chat.services.titles import title_from_text

TITLE_MAX = 200
SYSTEM_PROMPT_MAX = 20_000
ERROR_MAX = 2_000
ANSWER_MAX = 200_000
IMPORT_MAX_BYTES = 5 * 1024 * 1024
IMPORT_MAX_MESSAGES = 5_000
EXPORT_FORMAT = "gptalk-chat"
EXPORT_VERSION = 1


class InvalidInput(ValueError):
    """A value or file a person sent that cannot be used; `str()` says why, for them."""


def _clean_text(value, *, field: str, max_length: int, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"“{field}” must be text.")
    value = value.replace("\x00", "")
    if len(value) > max_length:
        raise InvalidInput(f"“{field}” is too long: at most {max_length} characters.")
    if not allow_empty and not value.strip():
        raise InvalidInput(f"“{field}” must not be empty.")
    return value


def conversation_create_empty(*, user, system_prompt: str = "", model: str = "") -> Conversation:
    """A conversation with settings and no message yet (a new chat with a system prompt)."""
    return Conversation.objects.create(
        owner=user,
        system_prompt=_clean_text(system_prompt, field="system prompt", max_length=SYSTEM_PROMPT_MAX),
        model=_clean_text(model, field="model", max_length=MODEL_ID_MAX).strip(),
    )


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(_clean_text(title, field="title", max_length=TITLE_MAX, allow_empty=False).split())
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete it with its messages. An answer still streaming ends as failed when its save finds no row."""
    conversation.delete()


def conversation_pin(*, conversation: Conversation, pinned: bool) -> Conversation:
    if not isinstance(pinned, bool):
        raise InvalidInput("“pinned” must be true or false.")
    # Pinning does not make a conversation newer: keep updated_at as it is.
    Conversation.objects.filter(pk=conversation.pk).update(pinned=pinned)
    conversation.pinned = pinned
    return conversation


def conversation_configure(
    *, conversation: Conversation, system_prompt: str | None = None, model: str | None = None
) -> Conversation:
    """Set the system prompt and/or the model used for the next answers."""
    fields = []
    if system_prompt is not None:
        conversation.system_prompt = _clean_text(
            system_prompt, field="system prompt", max_length=SYSTEM_PROMPT_MAX
        )
        fields.append("system_prompt")
    if model is not None:
        conversation.model = _clean_text(model, field="model", max_length=MODEL_ID_MAX).strip()
        fields.append("model")
    if fields:
        conversation.save(update_fields=[*fields, "updated_at"])
    return conversation


def conversation_share(*, conversation: Conversation) -> Conversation:
    """Give it a read-only link (kept if it already has one)."""
    if not conversation.share_token:
        conversation.share_token = secrets.token_urlsafe(32)
        conversation.shared_at = timezone.now()
        Conversation.objects.filter(pk=conversation.pk).update(
            share_token=conversation.share_token, shared_at=conversation.shared_at
        )
    return conversation


def conversation_unshare(*, conversation: Conversation) -> Conversation:
    """Revoke the link: the old URL answers 404 from now on (a new share gets a new token)."""
    Conversation.objects.filter(pk=conversation.pk).update(share_token=None, shared_at=None)
    conversation.share_token = None
    conversation.shared_at = None
    return conversation


# ---- import ------------------------------------------------------------------

_TOP_KEYS = {"format", "version", "title", "model", "system_prompt", "created_at", "exported_at", "messages"}
_MESSAGE_KEYS = {"id", "parent", "role", "content", "status", "error", "model", "created_at"}
# Without Django's type stubs mypy takes a TextChoices member for its (value, label) tuple.
_IMPORTED_STATUSES = {s.value for s in Message.FINAL_STATUSES}  # type: ignore[attr-defined]


def conversation_import(*, user, raw: bytes) -> Conversation:
    """Create a new conversation of `user` from an export file (JSON bytes).

    Strict: a size limit, the exact format marker and version, known keys only,
    roles user/assistant, final statuses only, length limits, and parents that
    name an earlier message of the file. Ids in the file only link messages to
    each other; every row gets a new id.
    """
    if len(raw) > IMPORT_MAX_BYTES:
        raise InvalidInput(f"The file is too large: at most {IMPORT_MAX_BYTES // (1024 * 1024)} MB.")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput("The file is not valid JSON (UTF-8).") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InvalidInput("This is not a GPTalk Chat export (JSON): its “format” is missing or wrong.")
    if data.get("version") != EXPORT_VERSION:
        raise InvalidInput(f"Unsupported export version: only version {EXPORT_VERSION} can be imported.")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise InvalidInput(f"Unknown field(s) in the file: {', '.join(sorted(unknown))}.")
    title = _clean_text(data.get("title", ""), field="title", max_length=TITLE_MAX)
    model = _clean_text(data.get("model", ""), field="model", max_length=MODEL_ID_MAX)
    system_prompt = _clean_text(
        data.get("system_prompt", ""), field="system prompt", max_length=SYSTEM_PROMPT_MAX
    )
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("The file has no messages.")
    if len(messages) > IMPORT_MAX_MESSAGES:
        raise InvalidInput(f"Too many messages: at most {IMPORT_MAX_MESSAGES}.")
    rows = [_message_row(item, index) for index, item in enumerate(messages, start=1)]
    seen: set = set()
    for row in rows:
        if row["parent"] is not None and row["parent"] not in seen:
            raise InvalidInput(
                f"Message {row['ref']!r} names a parent that does not come before it in the file."
            )
        if row["ref"] in seen:
            raise InvalidInput(f"Two messages have the same id {row['ref']!r}.")
        seen.add(row["ref"])
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=user,
            title=title.strip() or title_from_text(next((r["content"] for r in rows if r["role"] == "user"), "")),
            model=model.strip(),
            system_prompt=system_prompt,
        )
        created: dict = {}
        for row in rows:
            created[row["ref"]] = Message.objects.create(
                conversation=conversation,
                parent=created[row["parent"]] if row["parent"] is not None else None,
                role=row["role"],
                content=row["content"],
                status=row["status"],
                error=row["error"],
                model=row["model"],
            )
    return conversation


def _message_row(item, index: int) -> dict:
    where = f"message {index}"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where.capitalize()} is not an object.")
    unknown = set(item) - _MESSAGE_KEYS
    if unknown:
        raise InvalidInput(f"Unknown field(s) in {where}: {', '.join(sorted(unknown))}.")
    ref = item.get("id", index)
    parent = item.get("parent")
    for name, value in (("id", ref), ("parent", parent)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str)) or len(str(value)) > 64):
            raise InvalidInput(f"The “{name}” of {where} must be a short id.")
    role = item.get("role")
    if role not in (Message.Role.USER, Message.Role.ASSISTANT):
        raise InvalidInput(f"The role of {where} must be “user” or “assistant”.")
    limit = settings.CHAT_MAX_MESSAGE_CHARS if role == Message.Role.USER else ANSWER_MAX
    content = _clean_text(item.get("content"), field=f"content of {where}", max_length=limit)
    if role == Message.Role.USER and not content.strip():
        raise InvalidInput(f"The content of {where} is empty.")
    status = item.get("status", Message.Status.COMPLETE)
    if role == Message.Role.USER:
        status = Message.Status.COMPLETE if status is None else status
        if status != Message.Status.COMPLETE:
            raise InvalidInput(f"The status of {where} must be “complete”.")
    elif status not in _IMPORTED_STATUSES:
        raise InvalidInput(
            f"The status of {where} must be one of: {', '.join(sorted(_IMPORTED_STATUSES))}."
        )
    error = item.get("error") or ""
    return {
        "ref": ref,
        "parent": parent,
        "role": role,
        "content": content,
        "status": status,
        "error": _clean_text(error, field=f"error of {where}", max_length=ERROR_MAX),
        "model": _clean_text(item.get("model") or "", field=f"model of {where}", max_length=MODEL_ID_MAX),
    }
