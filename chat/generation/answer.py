"""One answer being written, and the upstream stream it reads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

from chat import events
from chat.upstream.gptalk_stream import ContentReset


class EarlyStream:
    """An answer's upstream stream, asked for before the answer's rows are saved.

    The request goes out at once (a task waits for the first delta) while the
    database writes the rows; the generation then reads it like any stream.
    Starting an answer thus never waits for the database queue before asking
    the model.
    """

    def __init__(self, stream) -> None:
        self.stream = stream
        self.first: asyncio.Future | None = asyncio.ensure_future(stream.__anext__())

    @property
    def provider_name(self) -> str:
        return getattr(self.stream, "provider_name", "")

    @property
    def model(self) -> str:
        return getattr(self.stream, "model", "")

    @property
    def usage(self) -> dict | None:
        return getattr(self.stream, "usage", None)

    def __aiter__(self) -> EarlyStream:
        return self

    def __anext__(self) -> Awaitable:
        """The first delta's future, then the stream's own awaitables: no
        coroutine of ours in between, for every delta of the answer."""
        first, self.first = self.first, None
        if first is not None:
            return first
        return self.stream.__anext__()

    async def aclose(self) -> None:
        first, self.first = self.first, None
        if first is not None and not first.done():
            first.cancel()
        if first is not None:
            with contextlib.suppress(BaseException):
                await first
        await self.stream.aclose()


@dataclass(eq=False)
class Generation:
    """One answer being written. Lives in the registry of the process running it."""

    message_id: int
    conversation_id: int
    history: list[dict]
    owner_id: int  # the conversation's owner: its events go to that user's group
    model: str = ""
    text: str = ""  # everything received so far (what is saved)
    published: str = ""  # what the events up to `seq` add up to (what a snapshot says)
    seq: int = 0  # events published
    delta_count: int = 0  # deltas received from the provider
    pending: str = ""  # received, not yet published
    pending_reset: bool = False
    queued: bool = False  # waiting for the hub to publish it this tick
    stop_requested: bool = False
    started: float = field(default_factory=time.monotonic)
    first_delta_ms: int | None = None
    last_save: float = field(default_factory=time.monotonic)
    saved_count: int = 0
    task: asyncio.Task | None = None
    # The provider's stream; its `provider_name` and `model` (when it has them) are saved at the end.
    upstream: AsyncIterator[str] | None = None
    remotes: set = field(default_factory=set)  # channels of other processes that follow it

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

    def has_pending(self) -> bool:
        return bool(self.pending) or self.pending_reset

    def take_event(self) -> dict:
        """Everything received since the last event, as the next seq-numbered event."""
        self.seq += 1
        event = events.delta(
            message=self.message_id,
            conversation=self.conversation_id,
            seq=self.seq,
            text=self.pending,
            reset=self.pending_reset,
        )
        self.published = self.text
        self.pending, self.pending_reset = "", False
        return event

    def snapshot_event(self) -> dict:
        return events.snapshot(message=self.message_id, seq=self.seq, content=self.published)
