"""The in-memory layer keeps channels' semantics without the per-send sweep;
publish_many sends a turn's messages in order, on any layer and on Redis."""

import asyncio
import secrets
import socket

import pytest
from channels.layers import InMemoryChannelLayer as BaseInMemoryChannelLayer
from redis.exceptions import RedisError

from chat.layers import CHANNEL, GROUP, InMemoryChannelLayer, RedisPubSubChannelLayer, publish_many

pytest_plugins = ["tests.fixtures.services"]


async def test_group_send_reaches_every_member_once_and_in_order():
    layer = InMemoryChannelLayer()
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add("g", channel)
    for seq in range(1, 6):
        await layer.group_send("g", {"type": "x.y", "seq": seq})
    for channel in channels:
        got = [(await layer.receive(channel))["seq"] for _ in range(5)]
        assert got == [1, 2, 3, 4, 5]


async def test_discarded_member_gets_nothing_and_unknown_group_is_fine():
    layer = InMemoryChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", a)
    await layer.group_add("g", b)
    await layer.group_discard("g", b)
    await layer.group_send("g", {"type": "x.y"})
    await layer.group_send("nobody", {"type": "x.y"})
    assert (await layer.receive(a))["type"] == "x.y"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(b), timeout=0.05)


async def test_a_full_member_misses_events_without_blocking_the_others():
    layer = InMemoryChannelLayer(capacity=2)
    full, free = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", full)
    await layer.group_add("g", free)
    for seq in range(4):
        await layer.group_send("g", {"type": "x.y", "seq": seq})
        if seq < 3:
            assert (await layer.receive(free))["seq"] == seq
    assert [(await layer.receive(full))["seq"] for _ in range(2)] == [0, 1]


async def test_expired_messages_and_groups_are_still_swept():
    layer = InMemoryChannelLayer(expiry=0.01, group_expiry=1)
    layer.clean_interval = 0
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.send(channel, {"type": "old"})
    await asyncio.sleep(0.05)
    layer._clean_expired()
    assert channel not in layer.channels
    assert channel not in layer.groups.get("g", {})


async def test_a_sender_changing_its_event_afterwards_changes_nothing_received():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    flat = {"type": "x.y", "text": "abc", "seq": 1}
    nested = {"type": "x.y", "message": {"content": "first"}, "ids": [1, 2]}
    await layer.group_send("g", flat)
    await layer.group_send("g", nested)
    flat["text"] = "changed"
    nested["message"]["content"] = "changed"
    nested["ids"].append(3)
    assert (await layer.receive(channel))["text"] == "abc"
    got = await layer.receive(channel)
    assert got["message"] == {"content": "first"} and got["ids"] == [1, 2]


async def test_a_listening_channel_keeps_its_queue_and_a_closed_one_leaves_nothing():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.group_send("g", {"type": "x.y", "seq": 1})
    assert (await layer.receive(channel))["seq"] == 1
    # Drained but still listened to: the same queue serves the next event.
    queue = layer.channels[channel]
    listener = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)
    await layer.group_send("g", {"type": "x.y", "seq": 2})
    assert (await listener)["seq"] == 2
    assert layer.channels[channel] is queue
    # The consumer goes away (its receive is cancelled): nothing of it remains.
    listener = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)
    listener.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listener
    await layer.group_discard("g", channel)
    assert channel not in layer.channels
    assert "g" not in layer.groups


# ---- publish_many: one call for a turn's messages, in order ---------------------------


class PlainLayer(BaseInMemoryChannelLayer):
    """A layer with no publish_many of its own (channels' in-memory one)."""


async def test_publish_many_on_any_layer_sends_in_order_and_drops_only_what_a_full_channel_refuses():
    layer = PlainLayer(capacity=1)
    full, free = await layer.new_channel(), await layer.new_channel()
    await layer.send(full, {"type": "x.y", "n": 0})
    await layer.group_add("g", free)
    await publish_many(layer, [(CHANNEL, full, {"type": "x.y", "n": 1}), (GROUP, "g", {"type": "x.y", "n": 2})])
    assert (await layer.receive(free))["n"] == 2
    assert (await layer.receive(full))["n"] == 0
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(full), timeout=0.05)


@pytest.mark.multiprocess
async def test_publish_many_on_redis_reaches_channels_and_groups_in_order(redis_url):
    # Pub/sub channels are shared by every database number: a prefix of its own.
    prefix = f"t{secrets.token_hex(4)}"
    sender = RedisPubSubChannelLayer(hosts=[redis_url], prefix=prefix)
    receiver = RedisPubSubChannelLayer(hosts=[redis_url], prefix=prefix)
    try:
        channel = await receiver.new_channel()
        await receiver.group_add("g", channel)
        await receiver.group_add("h", channel)
        messages = [
            (CHANNEL, channel, {"type": "x.y", "n": 1}),
            (GROUP, "g", {"type": "x.y", "n": 2}),
            (GROUP, "nobody", {"type": "x.y", "n": -1}),
            (GROUP, "h", {"type": "x.y", "n": 3, "text": "é" * 10_000}),
            (CHANNEL, channel, {"type": "x.y", "n": 4}),
        ]
        await sender.publish_many(messages)
        got = [await asyncio.wait_for(receiver.receive(channel), 5) for _ in range(4)]
        assert [m["n"] for m in got] == [1, 2, 3, 4]
        assert got[2]["text"] == "é" * 10_000
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receiver.receive(channel), timeout=0.2)
    finally:
        await sender.flush()
        await receiver.flush()


async def test_publish_many_on_an_unreachable_redis_raises_what_the_link_catches():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{probe.getsockname()[1]}"  # closed again: nothing listens
    layer = RedisPubSubChannelLayer(hosts=[url])
    try:
        with pytest.raises((RedisError, OSError)):
            await layer.publish_many([(GROUP, "g", {"type": "x.y"})])
    finally:
        await layer.flush()
