"""Writes on conversations and messages. Callers have already checked ownership
through chat.selectors, or pass the user so that the check happens here."""

import logging

from django.db import transaction
from django.utils import timezone

from chat.events import ACTIVE
from chat.models import AccountSettings, Conversation, Message
from chat.services.db import concurrent_on_postgres
from chat.services.titles import title_from_exchange, title_from_text
from chat.services.usage import usage_measure

logger = logging.getLogger(__name__)


def conversation_autotitle(*, conversation_id: int) -> Conversation | None:
    """After the first complete answer, replace the provisional title (the first
    line of the first message) with a short one. A title the user set is kept.
    Returns the conversation when its title changed."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return None
    answers = list(
        conversation.messages.filter(role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE)
        .select_related("parent")
        .order_by("created_at", "id")[:2]
    )
    if len(answers) != 1:
        return None
    question = answers[0].parent
    if question is None or conversation.title != title_from_text(question.content):
        return None
    title = title_from_exchange(question.content, answers[0].content)
    if not title or title == conversation.title:
        return None
    conversation.title = title
    Conversation.objects.filter(pk=conversation_id).update(title=title)
    return conversation


def conversation_create(*, user, first_text: str = "") -> Conversation:
    """A new conversation of `user`, with the defaults of their account page."""
    defaults = AccountSettings.objects.filter(user=user).first()
    return Conversation.objects.create(
        owner=user,
        title=title_from_text(first_text),
        model=defaults.default_model if defaults else "",
        system_prompt=defaults.custom_instructions if defaults else "",
    )


def exchange_create(
    *,
    user,
    conversation: Conversation | None,
    content: str,
    parent: Message | None = None,
    model: str = "",
) -> tuple[Conversation, Message, Message]:
    """Save the user's message and the assistant placeholder that will hold the answer,
    in a new conversation when `conversation` is None — all in one transaction.

    Everything is written before the upstream is called, so a crash or a failed
    upstream never loses what the user typed.
    """
    # savepoint=False: inside answer_begin's transaction a savepoint is two more
    # statements for nothing (any error there rolls the whole start back).
    with transaction.atomic(savepoint=False):
        created = conversation is None
        if conversation is None:
            conversation = conversation_create(user=user, first_text=content)
        user_message = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=Message.Role.USER,
            content=content,
            status=Message.Status.COMPLETE,
        )
        assistant = assistant_placeholder_create(
            conversation=conversation, parent=user_message, model=model
        )
        if not created:  # a new one was created with its title, just now
            changes = {"updated_at": timezone.now()}
            if not conversation.title:
                # A chat created empty (e.g. with only a system prompt) gets its
                # provisional title from its first message, like any other.
                conversation.title = changes["title"] = title_from_text(content)
            Conversation.objects.filter(pk=conversation.pk).update(**changes)
    return conversation, user_message, assistant


def assistant_placeholder_create(
    *, conversation: Conversation, parent: Message, model: str = ""
) -> Message:
    return Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        content="",
        status=Message.Status.PENDING,
        model=model or conversation.model,
    )


@concurrent_on_postgres
def messages_save_progress(*, rows: list[tuple[int, str, int]]) -> None:
    """Save the text so far of several answers in progress: (message id, text,
    delta count) each, in one transaction. An answer that has meanwhile ended
    keeps its final row (only pending/streaming rows are touched)."""
    now = timezone.now()
    with transaction.atomic():
        for message_id, content, delta_count in rows:
            Message.objects.filter(
                pk=message_id, status__in=ACTIVE
            ).update(
                content=content, delta_count=delta_count, status=Message.Status.STREAMING, updated_at=now
            )


@concurrent_on_postgres
def answer_finish(
    *,
    message_id: int,
    conversation_id: int,
    content: str,
    status: str,
    error: str = "",
    delta_count: int,
    first_delta_ms: int | None,
    duration_ms: int,
    provider: str = "",
    model: str = "",
    retitle: bool = False,
    prompt_chars: int | None = None,
    usage: dict | None = None,
) -> Conversation | None:
    """The one final write of an answer, whatever way it ended, and with
    `retitle` the conversation's short title after its first complete answer —
    one trip to the database thread for both.

    `provider` names the provider that answered (or was asked); `model`, the model
    id it answered with, replaces the requested one unless empty. Returns the
    conversation when its title changed. A failed title never undoes the answer
    (it is saved first) and is only logged: a title is cosmetic.

    `prompt_chars` is the size of what was sent upstream and `usage` the
    upstream's own token count, if it reported one; the answer's usage is
    recorded from them (estimated where the upstream did not count).
    """
    fields = {"model": model} if model else {}
    fields.update(usage_measure(prompt_chars=prompt_chars, answer=content, reported=usage).as_fields())
    Message.objects.filter(pk=message_id).update(
        content=content,
        status=status,
        error=error,
        delta_count=delta_count,
        first_delta_ms=first_delta_ms,
        duration_ms=duration_ms,
        provider=provider,
        updated_at=timezone.now(),
        **fields,
    )
    if not retitle or status != Message.Status.COMPLETE:
        return None
    try:
        with transaction.atomic():
            return conversation_autotitle(conversation_id=conversation_id)
    except Exception:  # never fail an answer for its title
        logger.exception("titling conversation %s failed", conversation_id)
        return None


INTERRUPTED_ERROR = "The server stopped while this answer was being written."


async def message_mark_interrupted(*, message_id: int, stale_before) -> bool:
    """Mark an answer left pending/streaming by a dead process as interrupted.

    Only if nobody saved it since `stale_before` (a live answer saves at least
    every third of the lease). True if it was marked.
    """
    updated = await Message.objects.filter(
        pk=message_id,
        status__in=ACTIVE,
        updated_at__lt=stale_before,
    ).aupdate(status=Message.Status.INTERRUPTED, error=INTERRUPTED_ERROR, updated_at=timezone.now())
    return updated == 1
