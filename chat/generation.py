"""Server-side answers: one task per assistant message, owned by a process, not a socket.

A Generation reads the provider's deltas and publishes seq-numbered events to
the conversation's channel-layer group, so every socket of the owner (a reload,
a second tab, another process behind the same Redis) sees the same answer. The
text is saved about once a second while it streams and once at the end.

Each process has one GenerationManager per event loop. It listens on a channel
of its own, added to the group `gen.<message id>` of every answer it runs, so
that a stop or snapshot request reaches the answer from any process.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from chat.models import Message
from chat.providers.registry import answer_stream
from chat.serializers import conversation_data
from chat.services import conversations as conversation_services
from chat.services.errors import GPTalkError
from chat.services.gptalk import ContentReset

logger = logging.getLogger(__name__)

ProviderCall = Callable[..., AsyncIterator[str]]


def conversation_group(conversation_id: int) -> str:
    return f"conv.{conversation_id}"


def generation_group(message_id: int) -> str:
    return f"gen.{message_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def default_provider() -> ProviderCall:
    """The enabled providers with fallback (chat/providers/registry.py)."""
    return answer_stream


@dataclass
class Generation:
    """One answer being written. Lives in the registry of the process running it."""

    message_id: int
    conversation_id: int
    history: list[dict]
    owner_id: int | None = None
    model: str = ""
    text: str = ""  # everything received so far (what is saved)
    published: str = ""  # what the events up to `seq` add up to (what a snapshot says)
    seq: int = 0  # events published
    delta_count: int = 0  # deltas received from the provider
    pending: str = ""  # received, not yet published
    pending_reset: bool = False
    closing: bool = False
    stop_requested: bool = False
    started: float = field(default_factory=time.monotonic)
    first_delta_ms: int | None = None
    last_save: float = field(default_factory=time.monotonic)
    saved_count: int = 0
    task: asyncio.Task | None = None
    # The provider's stream; its `provider_name` and `model` (when it has them) are saved at the end.
    upstream: AsyncIterator[str] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def absorb(self, delta: str) -> None:
        """Fold one provider delta into the text and the part not yet published."""
        self.delta_count += 1
        if self.first_delta_ms is None:
            self.first_delta_ms = int((time.monotonic() - self.started) * 1000)
        if isinstance(delta, ContentReset):
            self.text = self.pending = str(delta)
            self.pending_reset = True
        else:
            self.text += delta
            self.pending += delta
        self.wake.set()

    def has_pending(self) -> bool:
        return bool(self.pending) or self.pending_reset

    def take_event(self) -> dict:
        """Everything received since the last event, as the next seq-numbered event."""
        self.seq += 1
        event = {
            "type": "chat.delta",
            "conversation": self.conversation_id,
            "message": self.message_id,
            "seq": self.seq,
            "text": self.pending,
        }
        if self.pending_reset:
            event["reset"] = True
        self.published = self.text
        self.pending, self.pending_reset = "", False
        return event

    def snapshot_event(self) -> dict:
        return {
            "type": "chat.snapshot",
            "message": self.message_id,
            "seq": self.seq,
            "content": self.published,
        }


class GenerationManager:
    """The answers running in this process, and its channel for stop/snapshot requests."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.generations: dict[int, Generation] = {}
        self.channel: str | None = None
        self._listener: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self._flusher: asyncio.Task | None = None
        self._ready = asyncio.Lock()

    async def ensure_started(self) -> None:
        async with self._ready:
            if self.channel is not None:
                return
            # The default prefix on purpose: channels_redis receives every
            # process-local channel through one shared key per prefix, and a
            # second prefix would starve the consumers' channels.
            self.channel = await self.layer.new_channel()
            self._listener = asyncio.create_task(self._listen(), name="generation-listener")
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="generation-sweeper")
            self._flusher = asyncio.create_task(self._flush_forever(), name="generation-flusher")

    async def shutdown(self) -> None:
        """Stop listening and end every answer of this process (tests, loop shutdown)."""
        tasks = [g.task for g in self.generations.values() if g.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in (self._listener, self._sweeper, self._flusher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.channel = None

    # -- starting and stopping ------------------------------------------------

    async def start(
        self,
        *,
        message_id: int,
        conversation_id: int,
        history: list[dict],
        model: str = "",
        owner_id: int | None = None,
        provider: ProviderCall | None = None,
    ) -> Generation:
        await self.ensure_started()
        generation = Generation(
            message_id=message_id,
            conversation_id=conversation_id,
            history=history,
            model=model,
            owner_id=owner_id,
        )
        self.generations[message_id] = generation
        await self.layer.group_add(generation_group(message_id), self.channel)
        generation.task = asyncio.create_task(
            self._run(generation, provider or default_provider()),
            name=f"generation-{message_id}",
        )
        return generation

    async def request_stop(self, *, message_id: int) -> None:
        """Ask whichever process runs the answer to stop it."""
        local = self.generations.get(message_id)
        if local is not None:
            self._stop_local(local)
            return
        await self.layer.group_send(
            generation_group(message_id), {"type": "generation.stop", "message": message_id}
        )

    def local_snapshot(self, *, message_id: int) -> dict | None:
        """The snapshot event of an answer running in this process, else None."""
        local = self.generations.get(message_id)
        return local.snapshot_event() if local is not None else None

    async def request_snapshot(self, *, message_id: int, reply_to: str) -> None:
        """Ask the process running the answer to send its snapshot to `reply_to`."""
        await self.layer.group_send(
            generation_group(message_id),
            {"type": "generation.snapshot", "message": message_id, "reply_to": reply_to},
        )
        return False

    def _stop_local(self, generation: Generation) -> None:
        generation.stop_requested = True
        if generation.task is not None and not generation.task.done():
            generation.task.cancel()

    async def _listen(self) -> None:
        while True:
            event = await self.layer.receive(self.channel)
            try:
                await self._handle(event)
            except Exception:  # noqa: BLE001 - the listener must outlive one bad event
                logger.exception("generation listener failed on %s", event.get("type"))

    async def _handle(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "generation.stop":
            generation = self.generations.get(event.get("message"))
            if generation is not None:
                self._stop_local(generation)
        elif kind == "generation.snapshot":
            generation = self.generations.get(event.get("message"))
            if generation is not None:
                try:
                    await self.layer.send(event["reply_to"], generation.snapshot_event())
                except ChannelFull:
                    pass  # the asking socket is flooded; its watchdog asks again

    # -- the answer itself ----------------------------------------------------

    async def _run(self, generation: Generation, provider: ProviderCall) -> None:
        status, error = Message.Status.COMPLETE, ""
        cancelled_by_shutdown = False
        sender = asyncio.create_task(self._publish(generation))
        try:
            stream = generation.upstream = provider(
                model=generation.model or None, messages=generation.history
            )
            try:
                async for delta in stream:
                    if delta or isinstance(delta, ContentReset):
                        # The relay never waits here: the sender publishes, the
                        # flusher saves.
                        generation.absorb(delta)
            finally:
                await stream.aclose()
        except asyncio.CancelledError:
            if generation.stop_requested:
                status = Message.Status.STOPPED
            else:
                status = Message.Status.INTERRUPTED
                error = conversation_services.INTERRUPTED_ERROR
                cancelled_by_shutdown = True
        except GPTalkError as exc:
            status, error = Message.Status.FAILED, exc.message
        except Exception:  # noqa: BLE001 - any bug must still end the answer as failed, not hang
            logger.exception("answer %s failed unexpectedly", generation.message_id)
            status, error = Message.Status.FAILED, "Something went wrong on the server while writing this answer."
        # Every piece received is published before the `done`.
        generation.closing = True
        generation.wake.set()
        await asyncio.shield(sender)
        # After the first complete answer the conversation gets its short title
        # (in the same trip to the database as the final save).
        retitle = (
            status == Message.Status.COMPLETE and generation.owner_id is not None and not cancelled_by_shutdown
        )
        await asyncio.shield(self._finish(generation, status, error, retitle=retitle))
        if cancelled_by_shutdown:
            raise asyncio.CancelledError

    async def _publish(self, generation: Generation) -> None:
        """Publish what the answer received, as fast as the channel layer takes it.

        When the layer keeps up, each delta is its own event; when it falls
        behind (many streams, a slow Redis), whatever piled up meanwhile goes out
        as one event: no fixed coalescing window, no added delay, no backlog.
        """
        group = conversation_group(generation.conversation_id)
        while True:
            await generation.wake.wait()
            generation.wake.clear()
            while generation.has_pending():
                await self.layer.group_send(group, generation.take_event())
            if generation.closing:
                return

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_SAVE_INTERVAL)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - a failed save is retried next round
                logger.exception("saving answers in progress failed")

    async def flush(self) -> int:
        """Save every answer in progress that has new text (about once a second)
        or whose lease needs refreshing (a silent upstream: login, a stall), in
        one transaction and one trip to the database thread for all of them.
        Returns how many were saved."""
        now = time.monotonic()
        refresh = settings.CHAT_GENERATION_LEASE / 3
        due = [
            g
            for g in self.generations.values()
            if (g.delta_count != g.saved_count and now - g.last_save >= settings.CHAT_SAVE_INTERVAL * 0.9)
            or now - g.last_save >= refresh
        ]
        if not due:
            return 0
        rows = [(g.message_id, g.text, g.delta_count) for g in due]
        for g in due:
            g.last_save, g.saved_count = now, g.delta_count
        await conversation_services.messages_save_progress(rows=rows)
        return len(rows)

    async def _finish(self, generation: Generation, status: str, error: str, *, retitle: bool) -> None:
        retitled = None
        try:
            retitled = await conversation_services.answer_finish(
                message_id=generation.message_id,
                conversation_id=generation.conversation_id,
                retitle=retitle,
                content=generation.text,
                status=status,
                error=error,
                delta_count=generation.delta_count,
                first_delta_ms=generation.first_delta_ms,
                duration_ms=int((time.monotonic() - generation.started) * 1000),
                provider=getattr(generation.upstream, "provider_name", ""),
                model=getattr(generation.upstream, "model", ""),
                prompt_chars=sum(len(m["content"]) for m in generation.history),
                usage=getattr(generation.upstream, "usage", None),
            )
        finally:
            self.generations.pop(generation.message_id, None)
            await self.layer.group_discard(generation_group(generation.message_id), self.channel)
            await self.layer.group_send(
                conversation_group(generation.conversation_id),
                {
                    "type": "chat.done",
                    "message": generation.message_id,
                    "status": status,
                    "content": generation.text,
                    "error": error or None,
                    "seq": generation.seq,
                },
            )
        if retitled is not None:
            await self.layer.group_send(
                user_group(generation.owner_id),
                {"type": "chat.conversation", "conversation": conversation_data(retitled)},
            )

    # -- answers whose process died -------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_stale()
            except Exception:  # noqa: BLE001 - a failed sweep is retried next round
                logger.exception("sweeping stale answers failed")
            await asyncio.sleep(settings.CHAT_GENERATION_LEASE / 2)

    async def sweep_stale(self) -> int:
        """Mark answers nobody has saved within the lease as interrupted, and say so."""
        cutoff = timezone.now() - timedelta(seconds=settings.CHAT_GENERATION_LEASE)
        stale = [
            (m.pk, m.conversation_id, m.content)
            async for m in Message.objects.filter(
                role=Message.Role.ASSISTANT,
                status__in=(Message.Status.PENDING, Message.Status.STREAMING),
                updated_at__lt=cutoff,
            )
            .exclude(pk__in=list(self.generations))
            .only("pk", "conversation_id", "content")
        ]
        marked = 0
        for pk, conversation_id, content in stale:
            if not await conversation_services.message_mark_interrupted(
                message_id=pk, stale_before=cutoff
            ):
                continue  # its owner saved it meanwhile: it is alive or finished
            marked += 1
            await self.layer.group_send(
                conversation_group(conversation_id),
                {
                    "type": "chat.done",
                    "message": pk,
                    "status": Message.Status.INTERRUPTED,
                    "content": content,
                    "error": conversation_services.INTERRUPTED_ERROR,
                },
            )
        return marked


_managers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GenerationManager]" = (
    weakref.WeakKeyDictionary()
)


def get_manager() -> GenerationManager:
    """The manager of the running event loop (one per process in production)."""
    loop = asyncio.get_running_loop()
    manager = _managers.get(loop)
    if manager is None:
        manager = _managers[loop] = GenerationManager()
    return manager
