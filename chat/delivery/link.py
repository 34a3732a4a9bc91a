"""The process's link to the channel layer: what other processes send it, and what it sends them.

One channel per process (not per socket), counted group memberships, events
to other processes sent in batches by one task, and a listener that outlives
the layer: when Redis goes away, every call is dropped and logged once, the
listener retries, and once the layer answers again the groups are joined
anew (a restarted Redis forgot them) and `on_back` is called so that the hub
asks again for what it follows.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from redis.exceptions import RedisError

from chat import events
from chat.layers import CHANNEL, GROUP, publish_many

logger = logging.getLogger(__name__)

# The started links of each in-memory layer (see LayerLink.solo).
_LINKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Group events waiting for the layer at most (an outage that outlasts them
# loses the oldest, as it loses every event; the followers heal by snapshot).
GROUP_QUEUE_MAX = 10_000

# Seconds between tries of a listener whose layer failed (doubling up to the second).
RETRY_FIRST, RETRY_MAX = 0.1, 1.0

# A request that tells the sockets of a user (user_tell) waits this long for
# the layer at most: a Redis that does not answer must not hold the page.
USER_TELL_TIMEOUT = 2.0


def user_tell(user_id: int, event: dict) -> None:
    """From sync code (a view, a signal handler): send `event` to every process
    with a socket of `user_id`. A layer that fails or does not answer within
    USER_TELL_TIMEOUT is logged, never raised: the sockets catch up when they
    reconnect or reopen the conversation."""
    layer = get_channel_layer()
    if layer is None:
        return

    async def send() -> None:
        try:
            await asyncio.wait_for(layer.group_send(events.user_group(user_id), event), USER_TELL_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - whatever the layer raised, the request goes on
            logger.warning("could not tell user %s's sockets about %s: %r", user_id, event.get("type"), exc)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(send)()
        return
    # On an event loop's own thread (async code): send without blocking it.
    task = loop.create_task(send())
    _TELLING.add(task)
    task.add_done_callback(_TELLING.discard)


_TELLING: set[asyncio.Task] = set()


class LayerLink:
    """Created by the Hub; `start` opens the process's channel."""

    def __init__(self, layer, *, on_event: Callable[[dict], None], on_back: Callable[[], None]) -> None:
        self.layer = layer
        self.on_event = on_event  # every event received, in order
        self.on_back = on_back  # the layer answers again after an outage
        self.channel: str | None = None
        self.groups: dict[str, int] = {}  # groups joined → how many needs of this process
        self.outgoing: dict[str, list[dict]] = {}  # other processes' channels → events
        self.group_outgoing: list[tuple[str, dict]] = []  # (group, event), in order
        self.down = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def solo(self) -> bool:
        """No other link can hear this one: an in-memory layer reaches no other
        process, and no other hub of this process uses it. What the hub sends to
        a group would then only come back to its own listener, to be dropped (a
        deep copy and a wake-up per message, `done` and title). Views still
        send to user groups through the layer: the groups are joined as ever."""
        return isinstance(self.layer, InMemoryChannelLayer) and len(_LINKS.get(self.layer, ())) <= 1

    async def start(self) -> None:
        _LINKS.setdefault(self.layer, weakref.WeakSet()).add(self)
        self.channel = await self.layer.new_channel()
        self._tasks = [
            asyncio.create_task(self._listen(), name="layer-listen"),
            asyncio.create_task(self._forward_forever(), name="layer-forward"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.channel = None
        _LINKS.get(self.layer, set()).discard(self)

    # ---- sending -------------------------------------------------------------------

    async def group_send(self, group: str, event: dict) -> None:
        """An event of this process for the others in `group` (none when solo)."""
        if not self.solo:
            await self.call(self.layer.group_send, group, event)

    def group_send_later(self, group: str, event: dict) -> None:
        """Queue an event for the others in `group`: sent by the forwarding task
        after the batches queued before it (the deltas that precede it), so
        that no caller waits for a round trip to Redis per message, `done` or
        title. Nothing is queued when solo; in an outage the oldest go first."""
        if self.solo:
            return
        if len(self.group_outgoing) >= GROUP_QUEUE_MAX:
            del self.group_outgoing[0]  # lost as in any outage: the followers heal
        self.group_outgoing.append((group, event))
        self._wake.set()

    def send_later(self, channel: str, event: dict) -> None:
        """Queue an event for another process: it goes with whatever else queued
        for it meanwhile, in one message, in order."""
        queue = self.outgoing.get(channel)
        if queue is None:
            self.outgoing[channel] = [event]
            self._wake.set()
        else:
            queue.append(event)

    async def _forward_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            outgoing, self.outgoing = self.outgoing, {}
            grouped, self.group_outgoing = self.group_outgoing, []
            # One call for the whole turn (on Redis one pipeline), the batches
            # of deltas before the events that follow them.
            messages = [(CHANNEL, to, {"type": events.BATCH, "events": batch}) for to, batch in outgoing.items()]
            messages += [(GROUP, group, event) for group, event in grouped]
            await self.call(publish_many, self.layer, messages)

    async def call(self, method: Callable[..., Awaitable], *args) -> bool:
        """A layer call that may fail (Redis away): logged once per outage, never raised."""
        try:
            await method(*args)
        except ChannelFull:
            return False  # the receiver is flooded: it heals by seq and snapshot
        except (TimeoutError, OSError, RedisError) as exc:
            self._lost(exc)
            return False
        return True

    def _lost(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            logger.warning("The channel layer failed (%s): other processes miss events until it is back.", exc)

    # ---- groups ----------------------------------------------------------------------

    async def join(self, group: str) -> None:
        """Receive this group's events (counted: the process joins once)."""
        count = self.groups.get(group, 0)
        self.groups[group] = count + 1
        if count == 0 and self.channel is not None:
            await self.call(self.layer.group_add, group, self.channel)

    async def leave(self, group: str) -> None:
        count = self.groups.get(group, 0)
        if count > 1:
            self.groups[group] = count - 1
            return
        self.groups.pop(group, None)
        if count == 1 and self.channel is not None:
            await self.call(self.layer.group_discard, group, self.channel)

    # ---- receiving ---------------------------------------------------------------------

    async def _listen(self) -> None:
        retry = RETRY_FIRST
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a lost layer is retried, whatever raised
                self._lost(exc)
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)
                await self._rejoin()
                continue
            retry = RETRY_FIRST
            try:
                self.on_event(event)
            except Exception:  # the listener must outlive one bad event
                logger.exception("a channel-layer event failed: %s", event.get("type"))

    async def _rejoin(self) -> None:
        """Join every group again: a restarted Redis forgot them."""
        for group in list(self.groups):
            if not await self.call(self.layer.group_add, group, self.channel):
                return
        if self.down:
            self.down = False
            logger.warning("The channel layer is back.")
            self.on_back()
