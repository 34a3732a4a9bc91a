"""Starting and ending many answers at once: one trip to the database, a few statements for all.

When a hundred people press Send at the same moment, a hundred `answer_begin`
calls would queue one after another for the one database thread (SQLite has a
single writer), each running its seven statements while the event loop holds
the GIL. New chats need no per-conversation check, so those that arrive while
a batch is being written wait for the next one: every batch reads the limits,
the usage and the account defaults of all its users in three queries and
writes all its conversations and messages in three bulk inserts. A start that
finds the database idle is written at once, alone. Answers that end
together (they started together) are saved together the same way.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction

from chat.models import AccountSettings, Conversation, Message
from chat.services.answers import Begun
from chat.services.conversations import answers_finish, conversations_autotitle
from chat.services.db import concurrent_on_postgres, rows_insert
from chat.services.history import upstream_messages
from chat.services.limits import LimitExceeded, allowance_check, users_limits, users_usage
from chat.services.titles import title_from_text


@dataclass(frozen=True)
class NewChat:
    """A `chat.send` that starts a conversation: who, what, and which model ("" the default)."""

    user: Any  # the user model instance
    content: str
    model: str = ""


@concurrent_on_postgres
def answers_begin_new(*, chats: list[NewChat]) -> list[Begun | LimitExceeded]:
    """Start new conversations, each with its user message and answer
    placeholder, as `answer_begin` does for one; the result for each chat, in
    order, is its Begun or the LimitExceeded that refused it (nothing written)."""
    user_ids = list({chat.user.pk for chat in chats})
    limits = users_limits(user_ids=user_ids)
    usage = users_usage(user_ids=user_ids)
    defaults = {row.user_id: row for row in AccountSettings.objects.filter(user_id__in=user_ids)}
    results: list[Any] = [None] * len(chats)  # each filled below: a Begun or a LimitExceeded
    accepted = []
    for index, chat in enumerate(chats):
        counted = usage[chat.user.pk]
        try:
            allowance = allowance_check(
                limits=limits[chat.user.pk], usage=counted, message_chars=len(chat.content)
            )
        except LimitExceeded as exc:
            results[index] = exc
            continue
        counted.active += 1  # a second chat of the same user in this batch counts the first
        counted.recent += 1
        accepted.append((index, chat, allowance))
    if not accepted:
        return results
    conversations = [_conversation(chat, defaults.get(chat.user.pk)) for _, chat, _ in accepted]
    with transaction.atomic():
        rows_insert(conversations)
        questions = [
            Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=chat.content,
                status=Message.Status.COMPLETE,
            )
            for (_, chat, _), conversation in zip(accepted, conversations, strict=True)
        ]
        rows_insert(questions)
        answers = [
            Message(
                conversation=conversation,
                parent=question,
                role=Message.Role.ASSISTANT,
                content="",
                status=Message.Status.PENDING,
                model=chat.model or conversation.model,
            )
            for (_, chat, _), conversation, question in zip(accepted, conversations, questions, strict=True)
        ]
        rows_insert(answers)
    written = zip(accepted, conversations, questions, answers, strict=True)
    for (index, _, allowance), conversation, question, answer in written:
        results[index] = Begun(
            conversation=conversation,
            created=True,
            user_message=question,
            assistant=answer,
            history=upstream_messages(conversation=conversation, chain=[question]),
            allowance=replace(allowance, starts=allowance.starts - 1),
        )
    return results


def _conversation(chat: NewChat, defaults: AccountSettings | None) -> Conversation:
    return Conversation(
        owner=chat.user,
        title=title_from_text(chat.content),
        model=defaults.default_model if defaults else "",
        system_prompt=defaults.custom_instructions if defaults else "",
    )


class Batcher:
    """Calls that arrive while a batch is being written wait for the next batch.

    `write` takes the list of waiting items and returns one result per item
    (an Exception result is raised to that item's caller). A call that finds
    nothing being written is written at once, alone: batching adds no wait.
    One Batcher per event loop and job (`new_chat_queue()`, `finish_queue()`, `title_queue()`).
    """

    def __init__(self, write) -> None:
        self.write = write
        self.waiting: list[tuple[object, asyncio.Future]] = []
        self.writing = False
        self.writer: asyncio.Task | None = None
        self.batches = 0  # trips to the database so far (tests, benchmarks)

    async def submit(self, item):
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if not self.writing:
            self.writing = True
            # Held until done: the loop keeps only a weak reference to a task.
            self.writer = asyncio.get_running_loop().create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                self.batches += 1
                try:
                    results = await self.write([item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every waiting call gets the error
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue  # its caller is gone (a socket that closed)
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.writing = False


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Batcher]] = weakref.WeakKeyDictionary()


def _batcher(name: str, write) -> Batcher:
    loop = asyncio.get_running_loop()
    batchers = _batchers.setdefault(loop, {})
    batcher = batchers.get(name)
    if batcher is None:
        batcher = batchers[name] = Batcher(write)
    return batcher


def new_chat_queue() -> Batcher:
    """`await new_chat_queue().submit(NewChat(...))` → Begun, or raises LimitExceeded."""
    return _batcher("new_chat", lambda chats: answers_begin_new(chats=chats))


def finish_queue() -> Batcher:
    """`await finish_queue().submit(Finish(...))`: the answer's final row is saved."""
    return _batcher("finish", lambda finishes: answers_finish(finishes=finishes))


def title_queue() -> Batcher:
    """`await title_queue().submit(conversation_id)` → the retitled Conversation or None."""
    return _batcher("title", lambda ids: conversations_autotitle(conversation_ids=ids))
