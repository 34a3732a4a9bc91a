"""Delivery of answers to sockets (chat.delivery), in this process and from another.

"Another process" is a second GenerationManager on the same event loop and the
same in-memory channel layer: it has its own channel and reaches the sockets
only through the layer, exactly as a second daphne process behind Redis does
(tests/test_multiprocess.py runs the real thing). The layer is then made to
lose, delay or refuse events to show that the sockets heal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers

from chat import events
from chat.delivery import encode
from chat.generation import GenerationManager, get_manager
from chat.layers import InMemoryChannelLayer
from chat.serializers import message_data
from chat.services.answers import answer_begin
from tests.ws import connect, is_done, poll, receive_until, replay

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]


@pytest.fixture
def layer_class(settings):
    """Swap the channel layer's class for one test (then back to the default)."""

    def use(cls) -> None:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{cls.__module__}.{cls.__qualname__}"}}
        channel_layers.backends.clear()

    yield use
    channel_layers.backends.clear()


async def remote_answer(user, ws, *, reply: str, emulator, **pacing) -> tuple[GenerationManager, int]:
    """Start an answer in a second manager ("another process") in a new
    conversation that `ws` has opened; return that manager and the answer's id."""
    begun = await answer_begin(user=user, conversation_id=None, content="question")
    await ws.send_json_to({"type": "conversation.open", "conversation": begun.conversation.pk})
    history = await ws.receive_json_from()
    assert history["type"] == "history"
    await emulator.anext(reply=reply, **pacing)
    other = GenerationManager()
    await other.start(
        message_id=begun.assistant.pk,
        conversation_id=begun.conversation.pk,
        history=begun.history,
        owner_id=user.pk,
        placeholder=message_data(begun.assistant),
    )
    return other, begun.assistant.pk


@contextlib.asynccontextmanager
async def remote_followed(user, emulator, *, reply: str, **pacing):
    """A socket of `user` following an answer run by another process: (socket, answer id)."""
    ws = await connect(user)
    assert (await ws.connect())[0]
    other = None
    try:
        other, answer = await remote_answer(user, ws, reply=reply, emulator=emulator, **pacing)
        yield ws, answer
    finally:
        await ws.disconnect()
        if other is not None:
            await other.shutdown()


@pytest.fixture
async def alice(make_user):
    return await sync_to_async(make_user)("alice")


async def test_a_socket_follows_an_answer_run_by_another_process(alice, emulator):
    reply = "".join(f"<{i:03d}>" for i in range(120))
    async with remote_followed(alice, emulator, reply=reply, chunk_chars=5, interval_ms=3) as (ws, answer):
        frames = await receive_until(ws, is_done, timeout=20)
    assert frames[0]["type"] == "message" and frames[0]["message"]["id"] == answer
    text, seqs = replay(frames, answer)
    assert text == reply and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert frames[-1]["status"] == "complete" and frames[-1]["content"] == reply


async def test_another_processs_answer_reaches_only_the_sockets_watching_its_conversation(alice, emulator):
    """Its events come to this process through the owner's group, which both
    sockets share (`ws` gets them all through it): the socket on another
    conversation gets none of them."""
    from chat.models import Conversation

    elsewhere = await Conversation.objects.acreate(owner=alice, title="elsewhere")
    aside = await connect(alice)
    assert (await aside.connect())[0]
    try:
        await aside.send_json_to({"type": "conversation.open", "conversation": elsewhere.pk})
        assert (await aside.receive_json_from())["type"] == "history"
        reply = "x" * 120
        async with remote_followed(alice, emulator, reply=reply, chunk_chars=4, interval_ms=2) as (ws, _answer):
            frames = await receive_until(ws, is_done, timeout=20)
            seen = []
            while not await aside.receive_nothing(timeout=1):
                seen.append(await aside.receive_json_from())
    finally:
        await aside.disconnect()
    assert frames[-1]["content"] == reply
    assert {f["type"] for f in frames} >= {"message", "delta", "done"}
    assert seen == []


class CountingLayer(InMemoryChannelLayer):
    """The real in-memory layer, counting what goes through it."""

    sent: list[str] = []
    joined: list[str] = []

    async def group_add(self, group, channel):
        CountingLayer.joined.append(group)
        await super().group_add(group, channel)

    async def group_send(self, group, message):
        CountingLayer.sent.append(message["type"])
        await super().group_send(group, message)

    async def send(self, channel, message):
        CountingLayer.sent.append(message["type"])
        await super().send(channel, message)


async def test_sockets_of_the_answers_own_process_get_deltas_without_the_layer(alice, emulator, layer_class):
    layer_class(CountingLayer)
    CountingLayer.sent, CountingLayer.joined = [], []
    reply = "x" * 400
    await emulator.anext(reply=reply, chunk_chars=4, interval_ms=1)  # 100 deltas
    ws, tab = await connect(alice), await connect(alice, path="/ws/chat/?v=2")
    assert (await ws.connect())[0] and (await tab.connect())[0]
    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "go"})
        frames = await receive_until(ws, is_done, timeout=20)
        conversation = frames[0]["conversation"]["id"]
        await tab.send_json_to({"type": "conversation.open", "conversation": conversation})
        seen = await receive_until(tab, lambda f: isinstance(f, dict) and f.get("type") == "history")
    finally:
        await ws.disconnect()
        await tab.disconnect()
    assert frames[-1]["content"] == reply and seen[-1]["messages"][1]["content"] == reply
    deltas = sum(1 for f in frames if f["type"] == "delta")
    assert deltas > 20
    # One process on an in-memory layer: nobody else could hear the hub, so
    # not one event goes through the layer (with another process on it, only
    # the rare ones do: the tests of other processes above and below).
    assert CountingLayer.sent == []
    # The process joins the group of the user its sockets belong to, once, and
    # the one group of requests to answers: no group per answer nor per
    # conversation (on Redis, a subscribe and an unsubscribe for every answer,
    # and every conversation opened).
    assert sorted(CountingLayer.joined) == sorted([events.ANSWERS_GROUP, events.user_group(alice.pk)])


async def test_a_change_made_over_http_reaches_the_owners_open_socket(alice, emulator, layer_class):
    """Views still reach sockets through the layer's user groups, solo or not."""
    from django.test import Client

    layer_class(CountingLayer)
    CountingLayer.sent = []
    await emulator.anext(reply="short")
    ws = await connect(alice)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "go"})
        frames = await receive_until(ws, is_done, timeout=20)
        conversation = frames[0]["conversation"]["id"]
        client = Client()
        await sync_to_async(client.force_login)(alice)
        response = await sync_to_async(client.post)(
            f"/c/{conversation}/rename/", {"title": "Renamed over HTTP"}, content_type="application/json"
        )
        assert response.status_code == 200
        seen = await receive_until(
            ws, lambda f: f.get("type") == "conversation" and f["conversation"]["title"] == "Renamed over HTTP"
        )
    finally:
        await ws.disconnect()
    assert seen[-1]["conversation"]["id"] == conversation
    assert CountingLayer.sent == [events.CONVERSATION]


class DroppingLayer(InMemoryChannelLayer):
    """The real in-memory layer, losing chosen events the way a full channel does."""

    drop_seqs = {5, 6, 30}

    async def send(self, channel, message):
        if message["type"] == events.BATCH:
            kept = [
                e
                for e in message["events"]
                if not (e["type"] == events.DELTA and e["seq"] in self.drop_seqs) and e["type"] != events.DONE
            ]
            message = {**message, "events": kept}
        await super().send(channel, message)

    async def group_send(self, group, message):
        if message["type"] == events.DONE:
            return
        await super().group_send(group, message)


async def test_lost_deltas_and_a_lost_done_from_another_process_are_healed(alice, emulator, layer_class):
    layer_class(DroppingLayer)
    reply = "".join(f"[{i:03d}]" for i in range(60))
    async with remote_followed(alice, emulator, reply=reply, chunk_chars=5, interval_ms=4) as (ws, answer):
        frames = await receive_until(ws, is_done, timeout=20)
    assert len([f for f in frames if f["type"] == "snapshot"]) >= 2, "the gap was healed by a snapshot"
    shown, _ = replay(frames, answer)
    assert reply.startswith(shown)
    assert not {5, 6, 30} & {f["seq"] for f in frames if f["type"] == "delta"}
    # The done was lost too: the watchdog ended the answer from the saved row.
    assert frames[-1]["status"] == "complete" and frames[-1]["content"] == reply and "seq" not in frames[-1]


class SlowLayer(InMemoryChannelLayer):
    """The real in-memory layer, taking 20 ms per send (like a busy Redis)."""

    sends = 0

    async def send(self, channel, message):
        SlowLayer.sends += 1
        await asyncio.sleep(0.02)
        await super().send(channel, message)


async def test_a_slow_layer_carries_batches_never_a_backlog(alice, emulator, layer_class):
    layer_class(SlowLayer)
    SlowLayer.sends = 0
    reply = "".join(f"{i:03d}," for i in range(300))  # 300 deltas 2 ms apart
    async with remote_followed(alice, emulator, reply=reply, chunk_chars=4, interval_ms=2) as (ws, answer):
        frames = await receive_until(ws, is_done, timeout=30)
    text, seqs = replay(frames, answer)
    assert text == reply == frames[-1]["content"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "every event, in order"
    # 300 deltas at 2 ms could not each take a 20 ms send: they went in batches.
    assert SlowLayer.sends < 100


async def test_under_a_tiny_channel_capacity_text_is_never_wrong(alice, emulator, settings, layer_class):
    layer_class(InMemoryChannelLayer)
    settings.CHANNEL_LAYERS["default"]["CONFIG"] = {"capacity": 1}
    reply = "".join(f"({i:03d})" for i in range(300))
    async with remote_followed(alice, emulator, reply=reply, chunk_chars=5, interval_ms=0) as (ws, answer):
        frames = await receive_until(ws, is_done, timeout=30)
    shown, _ = replay(frames, answer)
    assert reply.startswith(shown)
    assert frames[-1]["content"] == reply


class FailingLayer(InMemoryChannelLayer):
    """The real in-memory layer while `down` is false; while true, every call
    fails the way redis-py's do when Redis is away (and what was sent is lost)."""

    down = False

    def _check(self) -> None:
        if FailingLayer.down:
            raise ConnectionError("Redis is away")

    async def send(self, channel, message):
        self._check()
        await super().send(channel, message)

    async def group_send(self, group, message):
        self._check()
        await super().group_send(group, message)

    async def group_add(self, group, channel):
        self._check()
        await super().group_add(group, channel)

    async def receive(self, channel):
        while True:
            self._check()
            try:
                return await asyncio.wait_for(super().receive(channel), 0.05)
            except TimeoutError:
                continue


async def test_a_layer_outage_mid_answer_is_healed_once_it_is_back(alice, emulator, layer_class):
    layer_class(FailingLayer)
    FailingLayer.down = False
    reply = "".join(f"{{{i:03d}}}" for i in range(150))  # ~1.5 s
    async with remote_followed(alice, emulator, reply=reply, chunk_chars=5, interval_ms=10) as (ws, answer):
        await receive_until(ws, lambda f: f["type"] == "delta", timeout=10)
        FailingLayer.down = True
        await asyncio.sleep(0.5)
        FailingLayer.down = False
        back = asyncio.get_running_loop().time()
        frames = await receive_until(ws, is_done, timeout=15)
        healed_s = asyncio.get_running_loop().time() - back
    assert frames[-1]["status"] == "complete" and frames[-1]["content"] == reply
    assert healed_s < 5
    # The answer itself never noticed: it was saved whole.
    from chat.models import Message

    saved = await Message.objects.aget(pk=answer)
    assert saved.status == "complete" and saved.content == reply


async def test_stop_reaches_an_answer_run_by_another_process(alice, emulator):
    async with remote_followed(alice, emulator, reply="y" * 4000, chunk_chars=2, interval_ms=5) as (ws, answer):
        await receive_until(ws, lambda f: f["type"] == "delta", timeout=10)
        await ws.send_json_to({"type": "chat.stop", "message": answer})
        frames = await receive_until(ws, is_done, timeout=10)
    assert frames[-1]["status"] == "stopped"
    assert 0 < len(frames[-1]["content"]) < 4000
    assert answer not in get_manager().generations


@pytest.mark.parametrize(
    "frame",
    [
        "abcd",
        "é€😀 \u2028\u2029\x00\x1f\"\\/</script><b>",
        [12, 3, "x"],
        {"type": "delta", "message": 1, "conversation": 2, "seq": 3, "text": "a\nb", "reset": True},
        {1: "an int key", "none": None, "yes": True, "half": 0.5, "big": [1.5e16, 2**53]},
        {"nested": {"deep": [{"empty": []}, {}]}},
    ],
)
def test_frames_are_encoded_as_json_dumps_would_in_utf8(frame):
    assert encode(frame) == json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()


async def test_frames_for_a_socket_whose_connection_just_closed_are_dropped_quietly(alice, emulator, caplog):
    """Between the browser going away and the consumer's `disconnect`, the hub
    may still send it frames: daphne refuses them (autobahn's Disconnected).
    That is no error: the frames are dropped, the answer goes on and is saved."""
    from autobahn.exception import Disconnected

    from chat.models import Message

    await emulator.anext(reply="x" * 200, chunk_chars=4, interval_ms=2)
    ws = await connect(alice)
    assert (await ws.connect())[0]
    (sock,) = get_manager().hub.by_user[alice.pk]

    async def closed(message):
        raise Disconnected("Attempt to send on a closed protocol")

    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "go"})
        sock.frame_send = closed  # the connection closes once the answer has begun
        answer = await poll(lambda: Message.objects.filter(role="assistant", status="complete").afirst(), timeout=20)
    finally:
        await ws.disconnect()
    assert answer.content == "x" * 200
    assert "sending to a socket failed" not in caplog.text
