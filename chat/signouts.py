"""When a session ends, its open websockets close: in every process.

A websocket is authenticated once, when it opens. Without this, a tab left
open on a shared computer would keep chatting after its owner logged out in
another tab, and a stolen session would keep receiving the owner's new chats
after a password change. So:

- logging out ends that session's sockets at once;
- a change to the account (password, active flag) or its deletion makes
  every socket of the account check its session again: a password change
  ends every other session of the account; the one it was made in lives on
  under a new key (Django moves it), so its sockets close too and the
  browser reconnects at once with its new cookie.

The news travels as a `SESSIONS` event in the user's group (chat/events.py),
once the change is committed, so a socket in any process hears it; an ended
session is named by a digest of its key, never by the key itself. The check
only reads (Django's and channels' own checks flush a session whose hash
differs). The browser, refused on reconnecting, says "You were signed out".
"""

from __future__ import annotations

import hashlib
from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.db import transaction
from django.utils.crypto import constant_time_compare

from chat import events
from chat.delivery.link import user_tell

# Close code of a socket whose session ended (docs/websocket-protocol.md).
CLOSE_SIGNED_OUT = 4401


def session_digest(session_key: str | None) -> str | None:
    """How an event names a session: the key is a credential, its digest is not."""
    if not session_key:
        return None
    return hashlib.sha256(session_key.encode()).hexdigest()


@database_sync_to_async
def session_user_id(session_key: str | None) -> int | None:
    """The id of the user `session_key` still authenticates, or None: the session
    is gone or expired, the user is gone or inactive, or the password changed
    since (the session's hash no longer matches). Deletes nothing."""
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    backend_path = data.get(BACKEND_SESSION_KEY)
    stored_hash = data.get(HASH_SESSION_KEY)
    if not stored_hash or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    try:
        user = load_backend(backend_path).get_user(data.get(SESSION_KEY))
    except (ValueError, TypeError):
        return None
    if user is None:  # gone, or inactive (ModelBackend refuses those)
        return None
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(stored_hash, known) for known in hashes):
        return None
    return user.pk


def announce(*, user_id: int, ended_session: str | None = None) -> None:
    """Tell the user's sockets, once the current transaction (if any) commits."""
    event = events.sessions(user=user_id, ended=session_digest(ended_session))
    transaction.on_commit(lambda: user_tell(user_id, event))


# ---- signal receivers (connected in chat/apps.py) -------------------------------------


def on_logged_out(sender, request, user, **kwargs) -> None:
    # A deleted account (no pk any more) was announced by its deletion.
    if user is not None and user.pk is not None and request is not None:
        announce(user_id=user.pk, ended_session=request.session.session_key)


def on_user_saved(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    # A login only stamps last_login: nothing about other sessions changed.
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    announce(user_id=instance.pk)


def on_user_deleted(sender, instance, **kwargs) -> None:
    announce(user_id=instance.pk)
