"""The events an answer produces and the groups they travel in: defined once here.

An event is a plain dict (it may cross processes through the channel layer);
its `type` names what happened. Sockets of the answer's own process get them
straight from chat.delivery; other processes get them through the channel
layer, in the groups named below. The frames a browser sees are made from
these events by chat.follow.
"""

from __future__ import annotations

from chat.models import Message

# Answers still being written: a new one may not start in their conversation.
ACTIVE = (Message.Status.PENDING, Message.Status.STREAMING)

DELTA = "chat.delta"  # message, conversation, seq, text, [reset]
SNAPSHOT = "chat.snapshot"  # message, seq, content, [conversation]
DONE = "chat.done"  # message, conversation, status, content, error, [seq], [model]
MESSAGE = "chat.message"  # message (serialized)
CONVERSATION = "chat.conversation"  # conversation (serialized), user
BATCH = "chat.batch"  # events: deltas of one answer for one remote process, in order
SESSIONS = "user.sessions"  # user, ended: digest of a session that ended, or None (chat/signouts.py)

# Requests to the process that runs an answer, sent to every process (ANSWERS_GROUP):
# only the one running it acts. `origin`: the asking process's channel.
STOP = "generation.stop"  # message, origin
FOLLOW = "generation.follow"  # message, reply_to: "send me a snapshot, then every event"

# Every process joins this group once, when its hub starts. Requests go to all
# processes rather than to a group per answer, which its process would have to
# join and leave: two Redis round trips on every answer, for requests that come
# only when a socket follows or stops an answer from another process.
ANSWERS_GROUP = "answers"


def user_group(user_id: int) -> str:
    """Processes with a socket of this user: every event of the user's
    conversations (messages, `done`, titles, new chats) and their sessions.

    A conversation is seen only by its owner's sockets, so its events need no
    group of their own: each process hands them to the sockets watching that
    conversation. A socket joins its user's group once, when it connects, and
    opening or starting a conversation costs no round trip to Redis."""
    return f"user.{user_id}"


def delta(*, message: int, conversation: int, seq: int, text: str, reset: bool = False) -> dict:
    event = {"type": DELTA, "message": message, "conversation": conversation, "seq": seq, "text": text}
    if reset:
        event["reset"] = True
    return event


def snapshot(*, message: int, seq: int, content: str) -> dict:
    return {"type": SNAPSHOT, "message": message, "seq": seq, "content": content}


def done(
    *,
    message: int,
    conversation: int,
    status: str,
    content: str,
    error: str | None,
    seq: int | None = None,
    model: str = "",
) -> dict:
    """An answer ended. `seq` is its last seq when the process that ran it says so;
    None when it was ended from the saved row (its process died). `model` is the
    model id that wrote it, when known."""
    event = {
        "type": DONE,
        "message": message,
        "conversation": conversation,
        "status": status,
        "content": content,
        "error": error or None,
    }
    if seq is not None:
        event["seq"] = seq
    if model:
        event["model"] = model
    return event


def message(*, data: dict) -> dict:
    """A message was saved (the user's, or an answer's placeholder)."""
    return {"type": MESSAGE, "message": data}


def conversation(*, data: dict, user: int) -> dict:
    """A conversation of `user` was created or changed (its sidebar entry)."""
    return {"type": CONVERSATION, "conversation": data, "user": user}


def sessions(*, user: int, ended: str | None) -> dict:
    """A session of `user` ended (`ended`: its digest), or the account changed
    (None): the user's sockets check their sessions (chat/signouts.py)."""
    return {"type": SESSIONS, "user": user, "ended": ended}
