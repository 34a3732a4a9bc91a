"""The GenerationManager: the answers of this process, their saves, and the sweep."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from channels.db import aclose_old_connections
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from chat import events
from chat.delivery import Hub
from chat.generation.answer import EarlyStream, Generation
from chat.models import Message
from chat.providers.registry import answer_stream, providers_warm
from chat.serializers import conversation_data
from chat.services import conversations as conversation_services
from chat.services.answer_batch import finish_queue, title_queue
from chat.services.conversations import Finish
from chat.upstream.errors import UpstreamError
from chat.upstream.gptalk_stream import ContentReset
from chat.upstream.http import clients_warm

logger = logging.getLogger(__name__)

ProviderCall = Callable[..., AsyncIterator[str]]


class GenerationManager:
    """The answers running in this process, their saves, and the sweep of dead processes' answers."""

    def __init__(self) -> None:
        self.generations: dict[int, Generation] = {}
        self.hub = Hub(get_channel_layer(), answers=self.generations, on_stop=self.stop_local)
        self.started = False
        self._tasks: list[asyncio.Task] = []
        self._ready = asyncio.Lock()

    async def ensure_started(self) -> None:
        """Join the channel layer and start saving and sweeping (once per process)."""
        async with self._ready:
            if self.started:
                return
            await self.hub.start()
            providers_warm()
            clients_warm()
            self._tasks = [
                asyncio.create_task(self._sweep_forever(), name="generation-sweeper"),
                asyncio.create_task(self._flush_forever(), name="generation-flusher"),
            ]
            self.started = True

    async def shutdown(self) -> None:
        """End every answer of this process: saved with its text, marked
        interrupted, its sockets told. Called when the process is asked to stop
        (SIGTERM) and when a test's event loop ends."""
        tasks = [g.task for g in self.generations.values() if g.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.hub.close()
        self.started = False

    # -- starting and stopping ------------------------------------------------

    def prefetch(self, *, history: list[dict], model: str = "", provider: ProviderCall | None = None) -> EarlyStream:
        """Ask the upstream for an answer now, before its rows exist (see EarlyStream)."""
        return EarlyStream((provider or answer_stream)(model=model or None, messages=history))

    async def start(
        self,
        *,
        message_id: int,
        conversation_id: int,
        history: list[dict],
        owner_id: int,
        model: str = "",
        provider: ProviderCall | None = None,
        upstream: EarlyStream | None = None,
        placeholder: dict | None = None,
    ) -> Generation:
        """Run an answer in this process. `placeholder` (the assistant message's
        data) is published first, so that every socket meets the answer before
        its first delta; `upstream`, a stream already asked for, is used as is."""
        await self.ensure_started()
        generation = Generation(
            message_id=message_id,
            conversation_id=conversation_id,
            history=history,
            model=model,
            owner_id=owner_id,
        )
        self.generations[message_id] = generation
        if upstream is None:
            upstream = (provider or answer_stream)(model=model or None, messages=history)
        generation.upstream = upstream
        # Other processes reach it from now on: their requests go to every
        # process (events.ANSWERS_GROUP) and this one finds it in `generations`.
        generation.task = asyncio.create_task(self._run(generation), name=f"generation-{message_id}")
        if placeholder is not None:
            self.hub.publish(events.message(data=placeholder), user=owner_id)
        return generation

    async def request_stop(self, *, message_id: int) -> None:
        """Ask whichever process runs the answer to stop it."""
        if not self.stop_local(message_id):
            await self.hub.ask_owner({"type": events.STOP, "message": message_id})

    def stop_local(self, message_id: int) -> bool:
        """Stop an answer of this process; False if it does not run here."""
        generation = self.generations.get(message_id)
        if generation is None:
            return False
        generation.stop_requested = True
        if generation.task is not None and not generation.task.done():
            generation.task.cancel()
        return True

    # -- the answer itself ----------------------------------------------------

    async def _run(self, generation: Generation) -> None:
        status, error = Message.Status.COMPLETE, ""
        cancelled_by_shutdown = False
        hub = self.hub
        try:
            stream = generation.upstream
            try:
                async for delta in stream:
                    if delta or isinstance(delta, ContentReset):
                        # The relay never waits here: the hub publishes this
                        # tick's text, the flusher saves.
                        generation.absorb(delta)
                        hub.touch(generation)
            finally:
                await stream.aclose()
        except asyncio.CancelledError:
            if generation.stop_requested:
                status = Message.Status.STOPPED
            else:
                status = Message.Status.INTERRUPTED
                error = conversation_services.INTERRUPTED_ERROR
                cancelled_by_shutdown = True
        except UpstreamError as exc:
            status, error = Message.Status.FAILED, exc.message
        except Exception:  # any bug must still end the answer as failed, not hang
            logger.exception("answer %s failed unexpectedly", generation.message_id)
            status, error = Message.Status.FAILED, "Something went wrong on the server while writing this answer."
        # Every piece received is published before the `done`.
        hub.drain(generation)
        # After the first complete answer the conversation gets its short title.
        retitle = status == Message.Status.COMPLETE and not cancelled_by_shutdown
        await asyncio.shield(self._finish(generation, status, error, retitle=retitle))
        if cancelled_by_shutdown:
            raise asyncio.CancelledError

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_SAVE_INTERVAL)
            try:
                await self.flush()
            except Exception:  # a failed save is retried next round
                logger.exception("saving answers in progress failed")
            # The database thread's connections are checked here, once a
            # second, rather than before every websocket frame (ChatConsumer.dispatch).
            try:
                await aclose_old_connections()
            except Exception:  # the database away: this loop must outlive it, like the saves
                logger.exception("closing stale database connections failed")

    async def flush(self) -> int:
        """Save every answer in progress that has new text (about once a second)
        or whose lease needs refreshing (a silent upstream: login, a stall), in
        one transaction and one trip to the database thread for all of them.
        Returns how many were saved. A failed save (the database restarting) is
        retried next round: the rows are marked saved only when it succeeded."""
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
        counts = [g.delta_count for g in due]
        await conversation_services.messages_save_progress(rows=rows)
        for g, count in zip(due, counts, strict=True):
            g.last_save, g.saved_count = now, count
        return len(rows)

    async def _finish(self, generation: Generation, status: str, error: str, *, retitle: bool) -> None:
        saved = await self._save_final(generation, status, error)
        self.generations.pop(generation.message_id, None)
        self.hub.publish(
            events.done(
                message=generation.message_id,
                conversation=generation.conversation_id,
                status=status,
                content=generation.text,
                error=error,
                seq=generation.seq,
                model=getattr(generation.upstream, "model", ""),
            ),
            user=generation.owner_id,
            remotes=generation.remotes,
        )
        if retitle and saved:
            # The short title comes after `done`: nobody waits for it to type again.
            try:
                retitled = await title_queue().submit(generation.conversation_id)
            except Exception:  # a title is cosmetic: never an answer's failure
                logger.exception("titling conversation %s failed", generation.conversation_id)
                retitled = None
            if retitled is not None:
                self.hub.publish(
                    events.conversation(data=conversation_data(retitled), user=generation.owner_id),
                    user=generation.owner_id,
                )

    async def _save_final(self, generation: Generation, status: str, error: str) -> bool:
        """The final write, retried while the database is away (a restart): an
        answer is never left `streaming` with its end unsaved. False if it gave up."""
        delay = 0.2
        deadline = time.monotonic() + settings.CHAT_GENERATION_LEASE
        while True:
            try:
                final = Finish(
                    message_id=generation.message_id,
                    conversation_id=generation.conversation_id,
                    content=generation.text,
                    status=status,
                    error=error,
                    delta_count=generation.delta_count,
                    first_delta_ms=generation.first_delta_ms,
                    duration_ms=int((time.monotonic() - generation.started) * 1000),
                    provider=getattr(generation.upstream, "provider_name", ""),
                    model=getattr(generation.upstream, "model", "") or generation.model,
                    prompt_chars=sum(len(m["content"]) for m in generation.history),
                    usage=getattr(generation.upstream, "usage", None),
                )
                # Answers that end together are saved together (one trip).
                await finish_queue().submit(final)
                return True
            except DatabaseError:
                if time.monotonic() > deadline:
                    logger.exception("the final save of answer %s failed; giving up", generation.message_id)
                    return False
                logger.warning("the final save of answer %s failed; retrying", generation.message_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- answers whose process died -------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_stale()
            except Exception:  # a failed sweep is retried next round
                logger.exception("sweeping stale answers failed")
            await asyncio.sleep(settings.CHAT_GENERATION_LEASE / 2)

    async def sweep_stale(self) -> int:
        """Mark answers nobody has saved within the lease as interrupted, and say so."""
        cutoff = timezone.now() - timedelta(seconds=settings.CHAT_GENERATION_LEASE)
        stale = [
            row
            async for row in Message.objects.filter(
                role=Message.Role.ASSISTANT,
                status__in=events.ACTIVE,
                updated_at__lt=cutoff,
            )
            .exclude(pk__in=list(self.generations))
            .values_list("pk", "conversation_id", "conversation__owner_id", "content")
        ]
        marked = 0
        for pk, conversation_id, owner_id, content in stale:
            if not await conversation_services.message_mark_interrupted(
                message_id=pk, stale_before=cutoff
            ):
                continue  # its owner saved it meanwhile: it is alive or finished
            marked += 1
            self.hub.publish(
                events.done(
                    message=pk,
                    conversation=conversation_id,
                    status=Message.Status.INTERRUPTED,
                    content=content,
                    error=conversation_services.INTERRUPTED_ERROR,
                ),
                user=owner_id,
            )
        return marked


_managers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GenerationManager] = (
    weakref.WeakKeyDictionary()
)


def get_manager() -> GenerationManager:
    """The manager of the running event loop (one per process in production)."""
    loop = asyncio.get_running_loop()
    manager = _managers.get(loop)
    if manager is None:
        manager = _managers[loop] = GenerationManager()
    return manager
