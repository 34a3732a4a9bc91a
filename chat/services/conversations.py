"""Writes on conversations and messages. Callers have already checked ownership
through chat.selectors, or pass the user so that the check happens here."""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from chat.events import ACTIVE
from chat.models import AccountSettings, Conversation, Message
from chat.services.db import concurrent_on_postgres, rows_update
from chat.services.titles import title_from_exchange, title_from_text
from chat.services.usage import usage_measure


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
    status = Message._meta.get_field("status").column
    with transaction.atomic():
        rows_update(
            model=Message,
            fields=["content", "delta_count", "status", "updated_at"],
            rows=[(content, count, Message.Status.STREAMING, now, pk) for pk, content, count in rows],
            where=f"{status} IN (%s, %s)",
            where_params=tuple(map(str, ACTIVE)),
        )


@dataclass(frozen=True)
class Finish:
    """The final state of an answer, as `answers_finish` takes it."""

    message_id: int
    conversation_id: int
    content: str
    status: str
    error: str
    delta_count: int
    first_delta_ms: int | None
    duration_ms: int
    provider: str
    model: str  # the model that answered, or the one asked for
    prompt_chars: int | None = None
    usage: dict | None = None


FINISH_FIELDS = [
    "content", "status", "error", "delta_count", "first_delta_ms", "duration_ms", "provider", "model",
    "updated_at", "prompt_chars", "answer_chars", "prompt_tokens", "answer_tokens", "tokens_estimated",
]  # fmt: skip


@concurrent_on_postgres
def answers_finish(*, finishes: list[Finish]) -> list[None]:
    """The final writes of several answers, together (rows_update); one None
    per answer (a Batcher's result)."""
    now = timezone.now()
    rows = []
    for done in finishes:
        usage = usage_measure(prompt_chars=done.prompt_chars, answer=done.content, reported=done.usage)
        rows.append((
            done.content, done.status, done.error, done.delta_count, done.first_delta_ms, done.duration_ms,
            done.provider, done.model, now, usage.prompt_chars, usage.answer_chars, usage.prompt_tokens,
            usage.answer_tokens, usage.tokens_estimated, done.message_id,
        ))  # fmt: skip
    with transaction.atomic():
        rows_update(model=Message, fields=FINISH_FIELDS, rows=rows)
    return [None] * len(finishes)


@concurrent_on_postgres
def conversations_autotitle(*, conversation_ids: list[int]) -> list[Conversation | None]:
    """The short titles of conversations whose first answer just completed
    (written after their `done`: a title is cosmetic and waits for nobody);
    per conversation, the retitled Conversation or None."""
    with transaction.atomic():
        retitled = _conversations_autotitle(conversation_ids=list(set(conversation_ids)))
    return [retitled.get(pk) for pk in conversation_ids]


def _conversations_autotitle(*, conversation_ids: list[int]) -> dict[int, Conversation]:
    """Retitle the conversations whose one complete answer is their first.

    The complete answers are counted in the database, so a long conversation
    costs one row here, not all its answers; only the conversations with
    exactly one are read further (its question and answer as plain values,
    then the conversations themselves), and the new titles are one update.
    A conversation whose title is no longer the one made from its first
    question was named by its user and keeps it."""
    if not conversation_ids:
        return {}
    complete = Message.objects.filter(
        conversation_id__in=conversation_ids, role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE
    )
    counted = complete.order_by().values("conversation_id").annotate(count=Count("id"), first=Min("id"))
    firsts = [row["first"] for row in counted if row["count"] == 1]
    if not firsts:
        return {}
    exchanges = list(Message.objects.filter(pk__in=firsts).values_list("conversation_id", "parent__content", "content"))
    conversations = Conversation.objects.in_bulk([conversation_id for conversation_id, _, _ in exchanges])
    changed = {}
    for conversation_id, question, answer in exchanges:
        conversation = conversations[conversation_id]
        if question is None or conversation.title != title_from_text(question):
            continue  # the user named it
        title = title_from_exchange(question, answer)
        if title and title != conversation.title:
            conversation.title = title
            changed[conversation_id] = conversation
    rows_update(model=Conversation, fields=["title"], rows=[(c.title, c.pk) for c in changed.values()])
    return changed


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
