"""The channel layers of the site, and `publish_many` for any layer.

`publish_many(layer, messages)` sends `(CHANNEL or GROUP, name, message)`
tuples in order, as `send` and `group_send` one after another would: the
process's link (chat/delivery/link.py) sends everything that queued during a
turn of its loop with one call. A layer may do it in one go (the Redis layer
below); any other gets the calls one after another.

The in-memory layer, without its per-send cost that grows with every socket:
channels' InMemoryChannelLayer scans every channel and group for expired
messages on each group_send and receive, and starts a task per group member:
with N open sockets each delta costs O(N), so N streams cost O(N²) (measured:
the top of the profile at 500 streams, see docs/performance.md). This subclass
keeps the same semantics with the sweep at most once a second and a direct put
into each member's queue; events of plain values (every delta) are copied
shallowly, and a channel keeps its queue while its consumer listens instead of
getting a new one after every event it reads.

The Redis layer is channels_redis's pub/sub layer, whose own `publish_many`
sends its `PUBLISH` commands in one pipeline (one round trip, one write)
rather than one round trip each: through the layer a `PUBLISH` alone cost
about 135 µs of CPU, five in a pipeline about 40 each (docs/performance.md,
eighth pass).
"""

from __future__ import annotations

import asyncio
import time
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as BaseInMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer as BaseRedisPubSubChannelLayer

# The kinds of destination of publish_many.
CHANNEL, GROUP = "channel", "group"


async def publish_many(layer, messages: list[tuple[str, str, dict]]) -> None:
    """Send each `(CHANNEL or GROUP, name, message)`, in order. A message to a
    full channel is dropped (ChannelFull: its receiver is flooded and heals by
    seq and snapshot); any other failure raises and drops the rest."""
    many = getattr(layer, "publish_many", None)
    if many is not None:
        await many(messages)
        return
    for kind, name, message in messages:
        try:
            await (layer.group_send if kind == GROUP else layer.send)(name, message)
        except ChannelFull:
            continue

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


class RedisPubSubChannelLayer(BaseRedisPubSubChannelLayer):
    """channels_redis's pub/sub layer (pinned in requirements.txt: this reaches
    into its shards) with `publish_many`."""

    async def publish_many(self, messages: list[tuple[str, str, dict]]) -> None:
        """One pipeline per run of messages to the same shard, in order, each
        under the shard's lock as its own `publish` takes it. A failure raises
        as `send` would (redis.exceptions.RedisError, OSError)."""
        layer = self._get_layer()
        runs: list[tuple[object, list[tuple[str, bytes]]]] = []
        for kind, name, message in messages:
            target = layer._get_group_channel_name(name) if kind == GROUP else name
            shard = layer._get_shard(target)
            if not runs or runs[-1][0] is not shard:
                runs.append((shard, []))
            runs[-1][1].append((target, self.serialize(message)))
        for shard, items in runs:
            async with shard._lock:
                shard._ensure_redis()
                async with shard._redis.pipeline(transaction=False) as pipe:
                    for target, payload in items:
                        pipe.publish(target, payload)
                    await pipe.execute()
