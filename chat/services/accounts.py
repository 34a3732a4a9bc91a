"""A person's account as a whole: their defaults for new chats, the export of
everything they wrote, deleting it all, and lifting a login lock-out."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections import defaultdict

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from chat.models import AccountSettings, Conversation, Message
from chat.selectors.accounts import account_settings_get
from chat.services.export import (
    conversation_export_json,
    conversation_export_markdown,
    export_filename,
)

logger = logging.getLogger(__name__)

INSTRUCTIONS_MAX = 20_000


def account_settings_update(
    *, user: AbstractBaseUser, default_model: str, custom_instructions: str
) -> AccountSettings:
    """Save the defaults that new chats start with (chats that exist keep theirs)."""
    row, _ = AccountSettings.objects.update_or_create(
        user=user,
        defaults={
            "default_model": default_model.strip(),
            "custom_instructions": custom_instructions.replace("\x00", ""),
        },
    )
    return row


def account_export_zip(*, user: AbstractBaseUser) -> bytes:
    """Every conversation of the user as Markdown and JSON (the per-chat export
    formats, so a JSON file can be imported again), and their account settings,
    in one zip file. Two queries however many chats there are."""
    conversations = list(Conversation.objects.for_user(user).order_by("created_at", "id"))
    messages: dict[int, list[Message]] = defaultdict(list)
    for message in Message.objects.filter(conversation__owner=user).order_by("created_at", "id"):
        messages[message.conversation_id].append(message)
    settings_row = account_settings_get(user=user)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        account = {
            "username": user.get_username(),
            "email": getattr(user, "email", ""),
            "date_joined": _iso(getattr(user, "date_joined", None)),
            "default_model": settings_row.default_model,
            "custom_instructions": settings_row.custom_instructions,
            "conversations": len(conversations),
            "exported_at": _iso(timezone.now()),
        }
        archive.writestr("account.json", json.dumps(account, ensure_ascii=False, indent=2) + "\n")
        for conversation in conversations:
            # The id keeps two chats with the same title apart.
            stem = f"{conversation.pk:06d}-" + export_filename(conversation, "x")[:-2]
            rows = messages[conversation.pk]
            archive.writestr(
                f"markdown/{stem}.md",
                conversation_export_markdown(conversation=conversation, messages=rows),
            )
            archive.writestr(
                f"json/{stem}.json", conversation_export_json(conversation=conversation, messages=rows)
            )
    return buffer.getvalue()


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def account_email_update(*, user: AbstractBaseUser, email: str) -> None:
    """The address password resets go to ("" for none)."""
    user.email = email
    user.save(update_fields=["email"])


def account_delete(*, user: AbstractBaseUser) -> None:
    """Delete the user and everything of theirs: conversations with their
    messages and share links (they cascade), settings, limits, sessions on
    every device, and the login attempts recorded under their name."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    username = user.get_username()
    user_id = str(user.pk)
    with transaction.atomic():
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
            if session.get_decoded().get("_auth_user_id") == user_id:
                session.delete()
        for model in (AccessAttempt, AccessLog, AccessFailureLog):
            model.objects.filter(username=username).delete()
        user.delete()


def login_lockout_lift(*, user: AbstractBaseUser) -> int:
    """Forget the failed logins of `user` (a new password was set, so the
    guesses of the old one no longer matter). Returns how many were removed."""
    from axes.utils import reset

    return reset(username=user.get_username())
