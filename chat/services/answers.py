"""Starting an answer: every check and write of a `chat.send` in one trip to the database."""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.db import transaction

from chat.models import Conversation, Message
from chat.selectors import NotFound
from chat.services.conversations import exchange_create
from chat.services.db import concurrent_on_postgres
from chat.services.history import branch_messages, upstream_messages
from chat.services.limits import Allowance, user_limits_check

ACTIVE = (Message.Status.PENDING, Message.Status.STREAMING)
NEWEST = object()  # "after the newest message", when the frame names no parent


class Busy(Exception):
    """An answer is still being written in this conversation."""


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
            conversation = Conversation.objects.for_user(user).filter(pk=conversation_id).first()
            if conversation is None:
                raise NotFound(f"Conversation {conversation_id} was not found.")
            if conversation.messages.filter(role=Message.Role.ASSISTANT, status__in=ACTIVE).exists():
                raise Busy
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


def _parent(conversation: Conversation, parent_id) -> Message | None:
    if parent_id is NEWEST:
        return conversation.messages.order_by("-created_at", "-id").first()
    if parent_id is None:
        return None
    parent = conversation.messages.filter(pk=parent_id).first()
    if parent is None:
        raise NotFound(f"Message {parent_id} was not found.")
    return parent
