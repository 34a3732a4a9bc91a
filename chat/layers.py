"""The in-memory channel layer, without its per-send cost that grows with every socket.

channels' InMemoryChannelLayer scans every channel and group for expired
messages on each group_send and receive, and starts a task per group member:
with N open sockets each delta costs O(N), so N streams cost O(N²) (measured:
the top of the profile at 500 streams, see docs/performance.md). This subclass
keeps the same semantics with the sweep at most once a second and a direct put
into each member's queue; events of plain values (every delta) are copied
shallowly, and a channel keeps its queue while its consumer listens instead of
getting a new one after every event it reads.
"""

from __future__ import annotations

import asyncio
import time
from copy import deepcopy

from channels.layers import InMemoryChannelLayer as BaseInMemoryChannelLayer

_ATOMS = (str, int, float, bool, type(None))


def _copy(message: dict) -> dict:
    """A copy the sender can no longer change: shallow when every value is a
    plain immutable value (deltas), deep otherwise."""
    for value in message.values():
        if type(value) not in _ATOMS:
            return deepcopy(message)
    return dict(message)


class InMemoryChannelLayer(BaseInMemoryChannelLayer):
    clean_interval = 1.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last_clean = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_clean < self.clean_interval:
            return
        self._last_clean = now
        super()._clean_expired()
        # channels drops an expired member (and one past group_expiry) from its
        # groups but keeps the group's dict even when it is left empty: one
        # dead entry per conversation whose socket missed an event, for the
        # life of the process. group_discard already removes empty groups.
        for group in [g for g, members in self.groups.items() if not members]:
            del self.groups[group]

    async def flush(self) -> None:
        await super().flush()
        self._last_clean = 0.0

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        # One copy for all members: receivers treat events as read-only.
        item = (time.time() + self.expiry, _copy(message))
        for channel in list(members):
            queue = self.channels.get(channel)
            if queue is None:
                queue = self.channels.setdefault(
                    channel, asyncio.Queue(maxsize=self.get_capacity(channel))
                )
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                pass  # as in channels: a flooded member misses this event (it heals by seq)

    async def receive(self, channel: str) -> dict:
        queue = self.channels.get(channel)
        if queue is None:
            self.require_valid_channel_name(channel)
            queue = self.channels.setdefault(
                channel, asyncio.Queue(maxsize=self.get_capacity(channel))
            )
        self._clean_expired()
        try:
            _, message = await queue.get()
        except BaseException:
            # The consumer stopped listening (its socket closed): forget the
            # channel unless events wait in it (they expire with the sweep).
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
            raise
        return message
