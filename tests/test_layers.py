"""The in-memory layer keeps channels' semantics without the per-send sweep."""

import asyncio

import pytest

from chat.layers import InMemoryChannelLayer


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
