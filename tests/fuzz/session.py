"""One socket reused across the examples of a test, and the checks every frame
Alice gets must pass; the `v1` and `v2` fixtures (protocol versions 1 and 2).
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from hypothesis import event
from hypothesis.control import currently_in_test_context

from chat import generation as gen
from chat.events import ACTIVE
from chat.models import Conversation, Message
from tests.fuzz.model import expected, unstorable
from tests.fuzz.world import KNOWN_CODES, World
from tests.ws import connect

# ---- a socket that survives the examples -------------------------------------------------


class Session:
    """One connected socket reused across examples; replaced if it died."""

    def __init__(self, world: World, path: str) -> None:
        self.world = world
        self.path = path
        self.ws = None
        self.clean = True  # the last example ran to its end
        self.frames: list = []  # every frame received, decoded
        self.control: httpx.AsyncClient | None = None
        self.strategies: dict = {}

    def strategy(self, name: str, build):
        """Strategies are built once per test (building them costs more than drawing)."""
        if name not in self.strategies:
            self.strategies[name] = build(self.world)
        return self.strategies[name]

    async def ensure(self):
        """The socket for the next example: the same one, unless the last example
        failed half-way (it may have left frames unread) or the consumer died."""
        if self.ws is not None and self.ws.future.done():
            self.ws.future.exception()  # retrieved: the failing example reported it
            self.ws = None
        if self.ws is not None and not self.clean:
            await self.ws.disconnect()
            self.ws = None
        if self.ws is None:
            self.ws = await connect(self.world.alice, path=self.path)
            assert (await self.ws.connect())[0]
        self.clean = False
        return self.ws

    async def close(self) -> None:
        if self.control is not None:
            await self.control.aclose()
        if self.ws is not None and not self.ws.future.done():
            await self.ws.disconnect()

    async def send_text(self, text: str) -> None:
        # Not send_to(): it cannot send an empty text frame.
        await self.ws.send_input({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_input({"type": "websocket.receive", "bytes": data})

    async def receive(self, timeout: float = 10):
        """The next frame; fails at once (not after the timeout) if the consumer died."""
        ws = self.ws
        getter = asyncio.ensure_future(ws.output_queue.get())
        done, _ = await asyncio.wait({getter, ws.future}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            if ws.future.done():
                ws.future.result()  # raises what killed the consumer
                raise AssertionError("the consumer ended")
            raise AssertionError(f"no frame within {timeout} s")
        message = getter.result()
        assert message["type"] == "websocket.send", f"the server closed the socket: {message}"
        raw = message.get("text")
        assert isinstance(raw, str), "the server sends text frames only"
        check_outgoing(self.world, raw)
        frame = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def probe(self) -> list:
        """Frames up to the reply to a probe frame: everything the frame before caused
        (frames are handled in order), and any answer events that arrived meanwhile."""
        ref = f"probe-{uuid.uuid4().hex[:12]}"
        await self.send_text(json.dumps({"type": "chat.stop", "message": 0, "ref": ref}))
        frames = []
        while True:
            frame = await self.receive()
            if isinstance(frame, dict) and frame.get("type") == "error" and frame.get("ref") == ref:
                assert frame["code"] == "bad_field"
                return frames
            frames.append(frame)


def check_outgoing(world: World, raw: str) -> None:
    """What every frame to Alice must satisfy, whatever she sent."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AssertionError(
            f"the server sent a frame that is not valid UTF-8 text (a websocket could not carry it, "
            f"daphne fails the socket with 1011): {raw[:200]!r}"
        ) from exc
    assert world.canary not in raw, f"Bob's data reached Alice: {raw[:300]!r}"
    frame = json.loads(raw)
    if isinstance(frame, str):
        return  # a v2 delta of an answer Alice follows
    kind = frame.get("type")
    if kind == "error":
        assert frame["code"] in KNOWN_CODES, frame
        assert isinstance(frame["detail"], str) and frame["detail"]
    owned_conversations = []
    owned_messages = []
    if kind in ("conversation", "history"):
        owned_conversations.append(frame["conversation"]["id"])
    if kind == "history":
        owned_messages += [m["id"] for m in frame["messages"]]
        owned_conversations += [m["conversation"] for m in frame["messages"]]
    if kind == "message":
        owned_messages.append(frame["message"]["id"])
        owned_conversations.append(frame["message"]["conversation"])
    if kind in ("delta", "snapshot", "done"):
        owned_messages.append(frame["message"])
    assert not set(owned_conversations) & world.bob_conversations, frame
    assert not set(owned_messages) & world.bob_messages, frame


async def alice_counts(world: World) -> tuple[int, int]:
    return (
        await Conversation.objects.filter(owner=world.alice).acount(),
        await Message.objects.filter(conversation__owner=world.alice).acount(),
    )


async def settle(world: World, timeout: float = 20) -> None:
    """Wait until none of Alice's answers is running (polling the saved rows)."""
    deadline = asyncio.get_running_loop().time() + timeout
    active = Message.objects.filter(conversation__owner=world.alice, role=Message.Role.ASSISTANT, status__in=ACTIVE)
    while await active.aexists():
        assert asyncio.get_running_loop().time() < deadline, "Alice's answers did not end"
        await asyncio.sleep(0.02)


async def check_frame(session: Session, text: str | None, data: bytes | None = None) -> list:
    """Send one frame; check the answer against the model; return what came back."""
    expect = await expected(session.world, text)
    before = await alice_counts(session.world)
    if text is None:
        await session.send_bytes(data or b"")
    else:
        await session.send_text(text)
    frames = await session.probe()
    errors = [f for f in frames if isinstance(f, dict) and f.get("type") == "error"]
    shown = (text if text is not None else repr(data))[:200]
    assert len(errors) <= 1, f"{len(errors)} error frames for one frame {shown!r}: {errors}"
    if currently_in_test_context():  # hypothesis statistics: what the examples hit
        event(f"refused: {errors[0]['code']}" if errors else "accepted")
    if errors:
        error = errors[0]
        assert expect.refuse is not False, f"{shown!r} was refused: {error}"
        assert error["code"] in expect.codes, f"{shown!r}: got {error['code']}, expected one of {expect.codes}"
        if "ref" in error:
            assert expect.ref is not None and error["ref"] == expect.ref, (shown, error)
        else:
            assert (
                expect.ref is None or error["code"] in ("bad_json", "too_long") or unstorable(expect.ref)
            ), f"the error to {shown!r} does not echo its ref: {error}"
        assert await alice_counts(session.world) == before, f"the refused frame {shown!r} saved something"
    else:
        assert expect.refuse is not True, f"{shown!r} was not refused (expected one of {expect.codes})"
    return frames


async def check_still_serves(session: Session) -> None:
    """The socket answers `conversation.open` of Alice's own conversation, correctly."""
    world = session.world
    await session.send_text(json.dumps({"type": "conversation.open", "conversation": world.alice_conversation}))
    frames = await session.probe()
    histories = [f for f in frames if isinstance(f, dict) and f.get("type") == "history"]
    assert len(histories) == 1, frames
    history = histories[0]
    assert history["conversation"]["id"] == world.alice_conversation
    rows = Message.objects.filter(conversation_id=world.alice_conversation).order_by("created_at", "id")
    saved = [m.pk async for m in rows]
    assert [m["id"] for m in history["messages"]] == saved
    assert [m["id"] for m in history["messages"]][:2] == world.alice_messages


async def bob_is_untouched(world: World) -> None:
    manager = gen.get_manager()
    live = manager.generations.get(world.bob_live_answer)
    assert live is not None and not live.stop_requested, "Bob's answer was stopped by Alice"
    assert await Conversation.objects.filter(owner=world.bob).acount() == 2
    assert await Message.objects.filter(conversation__owner=world.bob).acount() == 5



@pytest.fixture
async def v1(world):
    session = Session(world, "/ws/chat/")
    yield session
    await session.close()


@pytest.fixture
async def v2(world):
    session = Session(world, "/ws/chat/?v=2")
    yield session
    await session.close()

