"""Starting an answer: every check and write of a `chat.send` or a
`chat.regenerate` in one transaction and one trip to the database.

Two sockets of one user may start an answer in one conversation at the same
instant (two tabs, two processes): the conversation's row is locked before the
"is an answer still being written?" check, so exactly one starts and the other
gets Busy. On PostgreSQL that is `SELECT ... FOR UPDATE`; on SQLite (where
Django ignores it) every writing transaction is IMMEDIATE (settings.py), which
takes the database's write lock at BEGIN, so the check runs alone there too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.db import transaction

from chat.models import Conversation, Message
from chat.selectors import NotFound
from chat.services.conversations import assistant_placeholder_create, exchange_create
from chat.services.db import concurrent_on_postgres
from chat.services.history import branch_messages, upstream_messages
from chat.services.limits import Allowance, user_limits_check

ACTIVE = (Message.Status.PENDING, Message.Status.STREAMING)
NEWEST = object()  # "after the newest message", when the frame names no parent


class Busy(Exception):
    """An answer is still being written in this conversation."""


class NotAnAnswer(Exception):
    """Only an assistant message that answers a question can be regenerated."""


@dataclass
class Begun:
    conversation: Conversation
    created: bool  # a new conversation, or one that had no title yet
    user_message: Message
    assistant: Message
    history: list[dict]  # what goes upstream
    allowance: Allowance  # what the user may still start after this one


@concurrent_on_postgres
def answer_begin(
    *, user, conversation_id: int | None, content: str, parent_id=NEWEST, model: str = ""
) -> Begun:
    """Check the user's limits, the conversation's ownership and state and the
    parent, then save the user message and the answer's placeholder and read
    the history to send upstream — one transaction, one thread hop.

    Raises LimitExceeded, NotFound (not theirs or missing), Busy.
    """
    allowance = user_limits_check(user=user, message_chars=len(content))
    with transaction.atomic():
        if conversation_id is None:
            conversation, parent = None, None
        else:
            conversation = _locked(Conversation.objects.for_user(user).filter(pk=conversation_id))
            if conversation is None:
                raise NotFound(f"Conversation {conversation_id} was not found.")
            _check_not_busy(conversation)
            parent = _parent(conversation, parent_id)
        untitled = conversation is None or not conversation.title
        conversation, user_message, assistant = exchange_create(
            user=user, conversation=conversation, content=content, parent=parent, model=model
        )
        if conversation_id is None:
            messages = [user_message]  # all a new conversation holds
        else:
            messages = list(conversation.messages.order_by("created_at", "id"))
    chain = branch_messages(messages=messages, leaf_id=user_message.pk)
    return Begun(
        conversation=conversation,
        created=untitled,
        user_message=user_message,
        assistant=assistant,
        history=upstream_messages(conversation=conversation, chain=chain),
        allowance=replace(allowance, starts=allowance.starts - 1),
    )


@concurrent_on_postgres
def answer_regenerate(*, user, message_id: int, model: str = "") -> Begun:
    """Write a new answer to the question that answer `message_id` answered (the
    old one stays, as an earlier branch): the same checks and one transaction as
    `answer_begin`. `model` empty: the old answer's model.

    Raises LimitExceeded, NotFound (not theirs or missing), NotAnAnswer, Busy.
    """
    allowance = user_limits_check(user=user)
    with transaction.atomic():
        old = Message.objects.for_user(user).filter(pk=message_id).only(
            "pk", "role", "parent_id", "model", "conversation_id"
        ).first()
        if old is None:
            raise NotFound(f"Message {message_id} was not found.")
        conversation = _locked(Conversation.objects.filter(pk=old.conversation_id))
        if old.role != Message.Role.ASSISTANT or old.parent_id is None:
            raise NotAnAnswer
        _check_not_busy(conversation)
        question = Message.objects.get(pk=old.parent_id)
        assistant = assistant_placeholder_create(
            conversation=conversation, parent=question, model=model or old.model
        )
        messages = list(conversation.messages.order_by("created_at", "id"))
    chain = branch_messages(messages=messages, leaf_id=question.pk)
    return Begun(
        conversation=conversation,
        created=False,
        user_message=question,
        assistant=assistant,
        history=upstream_messages(conversation=conversation, chain=chain),
        allowance=replace(allowance, starts=allowance.starts - 1),
    )


def _locked(conversations) -> Conversation | None:
    """The conversation, its row locked until the transaction ends (PostgreSQL)."""
    return conversations.select_for_update().first()


def _check_not_busy(conversation: Conversation) -> None:
    if conversation.messages.filter(role=Message.Role.ASSISTANT, status__in=ACTIVE).exists():
        raise Busy


def _parent(conversation: Conversation, parent_id) -> Message | None:
    if parent_id is NEWEST:
        return conversation.messages.order_by("-created_at", "-id").first()
    if parent_id is None:
        return None
    parent = conversation.messages.filter(pk=parent_id).first()
    if parent is None:
        raise NotFound(f"Message {parent_id} was not found.")
    return parent
