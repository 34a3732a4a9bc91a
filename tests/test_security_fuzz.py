"""Hostile frames on the chat socket: property-based fuzzing, then the cases it found.

Whatever a logged-in user sends, the consumer
- stays up: the socket stays open and still answers `conversation.open` of the
  user's own conversation with the right history;
- reveals nothing of another user: Bob's conversation, whose title and messages
  carry a canary string, and his answer streaming in the same process, never
  show up in any frame Alice gets, nor do Bob's ids as owned data;
- refuses a bad frame with exactly one `error` frame whose code is one of the
  codes docs/websocket-protocol.md lists (echoing the frame's `ref`), and a
  refused frame saves nothing;
- sends only frames that a websocket can carry: UTF-8 text (RFC 6455), so no
  lone surrogate, whatever the client put in its own strings.

The hypothesis tests drive one socket through many examples in the test's event
loop (pytest-asyncio runs async @given tests); a socket that died is replaced so
that shrinking still works. `expected()` is a small model of the protocol: what
the documentation says the server must answer to a frame.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
import websockets
from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from chat import generation as gen
from chat.consumers import ChatConsumer
from chat.models import Conversation, Message
from tests.fixtures.emulator import REPO_ROOT
from tests.fixtures.site import Browser, SiteProcess, manage, site_env
from tests.ws import connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]
pytest_plugins = ["tests.fixtures.services"]

MAX_FRAME = ChatConsumer.max_frame_chars
MAX_CHARS = django_settings.CHAT_MAX_MESSAGE_CHARS
TYPES = ("chat.send", "chat.stop", "chat.regenerate", "conversation.open")
ACTIVE = (Message.Status.PENDING, Message.Status.STREAMING)
# Codes a frame can get for text that cannot be stored or sent (NUL, lone surrogates).
UNSTORABLE = {"bad_json", "bad_field"}


def documented_error_codes() -> set[str]:
    """The codes of the "Error codes" table of the protocol documentation."""
    text = (REPO_ROOT / "docs" / "websocket-protocol.md").read_text()
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


KNOWN_CODES = documented_error_codes()


def test_every_error_code_the_server_sends_is_documented():
    """A client can only handle the codes the protocol documents."""
    sent = set()
    for path in (REPO_ROOT / "chat").rglob("*.py"):
        sent |= set(re.findall(r'(?:ClientError|LimitExceeded)\(\s*"([a-z_]+)"', path.read_text()))
    assert {"bad_field", "not_found", "busy"} <= sent  # the scan sees the consumer's codes
    assert sent - KNOWN_CODES == set(), "error codes missing from docs/websocket-protocol.md"


# ---- the world: Alice fuzzes, Bob has secrets ----------------------------------------


@dataclass
class World:
    alice: object
    bob: object
    canary: str
    alice_conversation: int
    alice_messages: list[int]
    bob_conversations: set[int]
    bob_messages: set[int]
    bob_live_answer: int
    emulator: object = None

    @property
    def known_ids(self) -> list[int]:
        return sorted({self.alice_conversation, *self.alice_messages, *self.bob_conversations, *self.bob_messages})


def canary_stream(canary: str):
    """Bob's answer: canary text for as long as it runs (until stopped or shut down)."""

    async def stream(*, model=None, messages=None):
        n = 0
        while True:
            n += 1
            yield f"{canary} {n} "
            await asyncio.sleep(0.05)

    return stream


@pytest.fixture
async def world(django_user_model, emulator, settings) -> World:
    # The per-user limits (tests/test_limits.py) would refuse a fuzzer's pace;
    # here every refusal must come from the frame itself.
    settings.CHAT_MESSAGES_PER_MINUTE = 10**6
    settings.CHAT_CONCURRENT_ANSWERS = 10**6
    settings.CHAT_DAILY_ANSWER_CHARS = 10**12
    alice = await django_user_model.objects.acreate(username="alice")
    bob = await django_user_model.objects.acreate(username="bob")
    canary = f"CANARY{uuid.uuid4().hex}"

    conversation = await Conversation.objects.acreate(owner=alice, title="Alice's own")
    question = await Message.objects.acreate(
        conversation=conversation, role=Message.Role.USER, content="Alice asks", status=Message.Status.COMPLETE
    )
    answer = await Message.objects.acreate(
        conversation=conversation, parent=question, role=Message.Role.ASSISTANT,
        content="Alice is answered", status=Message.Status.COMPLETE,
    )

    secret = await Conversation.objects.acreate(owner=bob, title=f"Bob's {canary}")
    bob_question = await Message.objects.acreate(
        conversation=secret, role=Message.Role.USER, content=f"Bob asks {canary}", status=Message.Status.COMPLETE
    )
    bob_answer = await Message.objects.acreate(
        conversation=secret, parent=bob_question, role=Message.Role.ASSISTANT,
        content=f"Bob is told {canary}", status=Message.Status.COMPLETE,
    )
    # An answer of Bob's left streaming by a dead process: the sweeper ends it
    # (its `done`, with the canary, goes to Bob's conversation only).
    stale = await Message.objects.acreate(
        conversation=secret, parent=bob_question, role=Message.Role.ASSISTANT,
        content=f"Bob's stale {canary}", status=Message.Status.STREAMING,
    )
    await Message.objects.filter(pk=stale.pk).aupdate(updated_at=timezone.now() - timedelta(hours=1))
    # And one streaming right now in this process.
    live_conversation = await Conversation.objects.acreate(owner=bob, title=f"Bob live {canary}")
    live_question = await Message.objects.acreate(
        conversation=live_conversation, role=Message.Role.USER, content=f"Go {canary}",
        status=Message.Status.COMPLETE,
    )
    live = await Message.objects.acreate(
        conversation=live_conversation, parent=live_question, role=Message.Role.ASSISTANT,
        content="", status=Message.Status.PENDING,
    )
    manager = gen.get_manager()
    await manager.start(
        message_id=live.pk, conversation_id=live_conversation.pk, history=[], owner_id=bob.pk,
        provider=canary_stream(canary),
    )
    yield World(
        alice=alice,
        bob=bob,
        canary=canary,
        alice_conversation=conversation.pk,
        alice_messages=[question.pk, answer.pk],
        bob_conversations={secret.pk, live_conversation.pk},
        bob_messages={bob_question.pk, bob_answer.pk, stale.pk, live_question.pk, live.pk},
        bob_live_answer=live.pk,
        emulator=emulator,
    )
    running = manager.generations.get(live.pk)
    if running is not None and running.task is not None:
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)


# ---- the model of the protocol ----------------------------------------------------------


@dataclass
class Expect:
    """What the server may answer: `refuse` True (must), False (must not), None (either)."""

    refuse: bool | None
    codes: set[str] = field(default_factory=set)
    ref: str | None = None  # the ref an error frame must echo


def _id_ok(value, *, nullable: bool = False) -> bool:
    if value is None:
        return nullable
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _in_db_range(value: int) -> bool:
    return 1 <= value < 2**63


UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def _unstorable(value) -> bool:
    """A string (anywhere in the frame) holding NUL or a lone surrogate."""
    stack = [value]
    while stack:  # not recursive: frames nest as deep as the parser allows
        item = stack.pop()
        if isinstance(item, str):
            if UNSTORABLE_CHARS.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


async def _own_conversation(world: World, value: int) -> bool:
    return _in_db_range(value) and await Conversation.objects.filter(pk=value, owner=world.alice).aexists()


async def _own_message(world: World, value: int) -> Message | None:
    if not _in_db_range(value):
        return None
    return await Message.objects.filter(pk=value, conversation__owner=world.alice).afirst()


async def expected(world: World, text: str | None) -> Expect:
    """The documented answer to one frame (`None`: a binary frame)."""
    if text is None:
        return Expect(True, {"bad_json"})
    if len(text) > MAX_FRAME:
        return Expect(True, {"too_long"})
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return Expect(True, {"bad_json"})
    if not isinstance(frame, dict):
        return Expect(True, {"bad_json"})
    # The server parses deep in a call stack: it may hit the recursion limit where
    # this test did not. Refusing very deep nesting as bad_json is right too.
    deep = _depth(frame) > 100
    ref = frame.get("ref")
    ref = ref if isinstance(ref, str) and len(ref) <= 64 else None
    kind = frame.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        expect = Expect(True, {"bad_type"}, ref)
    else:
        expect = await _expected_command(world, kind, frame)
        expect.ref = ref
    if deep:
        expect.codes.add("bad_json")
        if expect.refuse is False:
            expect.refuse = None
    if _unstorable(frame):
        # Refusing such text is fine (and needed where it would be stored or
        # echoed); accepting it is fine where the server copes.
        expect.codes |= UNSTORABLE
        if expect.refuse is False:
            expect.refuse = None
    return expect


async def _expected_command(world: World, kind: str, frame: dict) -> Expect:
    missing = object()
    codes: set[str] = set()
    maybe: set[str] = set()
    if kind == "conversation.open":
        value = frame.get("conversation", missing)
        if not _id_ok(value if value is not missing else None):
            return Expect(True, {"bad_field"})
        if not await _own_conversation(world, value):
            return Expect(True, {"not_found"})
        return Expect(False)
    if kind in ("chat.stop", "chat.regenerate"):
        value = frame.get("message", missing)
        if not _id_ok(value if value is not missing else None):
            return Expect(True, {"bad_field"})
        message = await _own_message(world, value)
        if message is None:
            return Expect(True, {"not_found"})
        if kind == "chat.stop":
            if message.role != Message.Role.ASSISTANT:
                return Expect(True, {"not_streaming"})
            return Expect(None, {"not_streaming"})  # depends on whether it still streams
        if message.role != Message.Role.ASSISTANT:
            return Expect(True, {"bad_field"})
        maybe.add("busy")
        model = frame.get("model", "")
        if model is not None and (not isinstance(model, str) or len(model) > 200):
            codes.add("bad_field")
        return Expect(True, codes | maybe) if codes else Expect(None, maybe)
    # chat.send
    conversation = frame.get("conversation", missing)
    if conversation is missing or not _id_ok(conversation, nullable=True):
        codes.add("bad_field")
    content = frame.get("content")
    if not isinstance(content, str) or not content.strip():
        codes.add("bad_field")
    elif len(content) > MAX_CHARS:
        codes.add("too_long")
    model = frame.get("model", "")
    if model is not None and (not isinstance(model, str) or len(model) > 200):
        codes.add("bad_field")
    elif isinstance(model, str) and len(model) > Message._meta.get_field("model").max_length:
        maybe.add("bad_field")  # longer than the column: refusing it is right too
    parent = frame.get("parent", missing)
    if conversation is None:
        if parent is not missing and parent is not None:
            codes.add("bad_field")
    elif _id_ok(conversation):
        if parent is not missing and not _id_ok(parent, nullable=True):
            codes.add("bad_field")  # a malformed field is refused before any lookup
        elif not await _own_conversation(world, conversation):
            codes.add("not_found")
        else:
            maybe.add("busy")
            if parent is not missing:
                if parent is not None and not (
                    _in_db_range(parent)
                    and await Message.objects.filter(pk=parent, conversation_id=conversation).aexists()
                ):
                    codes.add("not_found")
    return Expect(True, codes | maybe) if codes else Expect(None if maybe else False, maybe)


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
                expect.ref is None or error["code"] in ("bad_json", "too_long") or _unstorable(expect.ref)
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
    saved = [m.pk async for m in Message.objects.filter(conversation_id=world.alice_conversation).order_by("created_at", "id")]
    assert [m["id"] for m in history["messages"]] == saved
    assert [m["id"] for m in history["messages"]][:2] == world.alice_messages


async def bob_is_untouched(world: World) -> None:
    manager = gen.get_manager()
    live = manager.generations.get(world.bob_live_answer)
    assert live is not None and not live.stop_requested, "Bob's answer was stopped by Alice"
    assert await Conversation.objects.filter(owner=world.bob).acount() == 2
    assert await Message.objects.filter(conversation__owner=world.bob).acount() == 5


# ---- strategies ----------------------------------------------------------------------------


def json_values(leaves=None):
    leaves = leaves or st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=8,
    )


# Strings as a client could put them in JSON: with lone surrogates and NUL (both
# only possible through \u escapes, which json.dumps writes for them).
hostile_chars = st.characters(categories=["L", "N", "P", "S", "Zs", "Cc", "Cs", "Co"])
hostile_text = st.text(hostile_chars, max_size=20)


def id_values(world: World):
    return st.one_of(
        st.sampled_from(world.known_ids),
        st.sampled_from(world.known_ids).map(lambda i: i + 0.0),  # 5.0 is not an id
        st.sampled_from(world.known_ids).map(str),
        st.sampled_from(world.known_ids).map(lambda i: [i]),
        st.sampled_from(world.known_ids).map(lambda i: {"id": i}),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        hostile_text,
        json_values(),
    )


def content_values():
    return st.one_of(
        st.text(max_size=40),
        hostile_text,
        st.sampled_from(["", " ", "\n\t ", "\u00a0", "\u2028", "ok", "<script>alert(1)</script>", "\x00"]),
        st.integers(min_value=MAX_CHARS - 1, max_value=MAX_CHARS + 1).map(lambda n: "é" * n),
        json_values(),
    )


def model_values():
    return st.one_of(
        st.none(),
        st.text(max_size=12),
        hostile_text,
        st.sampled_from(["GPTalk/gpt-3.5-turbo", "nobody/none", "GPTalk/", "/", "m" * 100, "m" * 101, "m" * 201]),
        json_values(),
    )


def object_frames(world: World):
    types = st.one_of(
        st.sampled_from(TYPES),
        st.sampled_from(["", "CHAT.SEND", "chat.send ", "chat.send\x00", "chat", "history", "error", "delta"]),
        hostile_text,
        json_values(),
    )
    refs = st.one_of(st.text(max_size=70), hostile_text, json_values(), st.just("r" * 64), st.just("r" * 65))
    return st.fixed_dictionaries(
        {"type": types},
        optional={
            "conversation": id_values(world),
            "message": id_values(world),
            "parent": id_values(world),
            "content": content_values(),
            "model": model_values(),
            "ref": refs,
            "extra": json_values(),
            "": json_values(),
        },
    ).map(json.dumps)


def valid_shaped_frames(world: World):
    """The four commands with their fields, ids drawn from everyone's."""
    ids = st.one_of(st.sampled_from(world.known_ids), st.integers(min_value=1, max_value=2**63 + 10))
    text = st.one_of(st.text(min_size=1, max_size=30), hostile_text)
    return st.one_of(
        st.builds(lambda c: {"type": "conversation.open", "conversation": c}, ids),
        st.builds(lambda m: {"type": "chat.stop", "message": m}, ids),
        st.builds(lambda m: {"type": "chat.regenerate", "message": m}, ids),
        st.builds(lambda c, t, r: {"type": "chat.send", "conversation": c, "content": t, "ref": r},
                  st.one_of(st.none(), ids), text, st.text(max_size=8)),
        st.builds(lambda c, t, p: {"type": "chat.send", "conversation": c, "content": t, "parent": p},
                  ids, text, st.one_of(st.none(), ids)),
    ).map(json.dumps)


def raw_texts(world: World):
    half = MAX_FRAME // 2
    return st.one_of(
        st.text(max_size=60),
        st.sampled_from([
            "", " ", "{", "}", "[]", "{}", "null", "true", "0", "-0", "1e999", '"x"', "NaN", "Infinity",
            '{"type"}', '{"type":}', '{"type":"chat.send",}', "{'type': 'chat.send'}", '{"type":"chat.send"}\x00',
            '{"type":"conversation.open","conversation":1}{"type":"chat.stop"}',
            '\ufeff{"type":"conversation.open","conversation":1}',
            '{"type":"conversation.open","type":"chat.send","conversation":null,"content":"dup"}',
            '{"__proto__":{"type":"chat.send"}}',
        ]),
        # Numbers past what an int parses (4300 digits) or a 64-bit column holds.
        st.integers(min_value=18, max_value=6000).map(
            lambda n: '{"type":"conversation.open","conversation":' + "9" * n + "}"
        ),
        # Nesting up to the frame limit: arrays, objects, and inside a valid frame.
        st.integers(min_value=1, max_value=half).map(lambda k: "[" * k + "]" * k),
        st.integers(min_value=1, max_value=MAX_FRAME // 6).map(lambda k: '{"a":' * k + "1" + "}" * k),
        st.integers(min_value=1, max_value=half - 40).map(
            lambda k: '{"type":"chat.stop","message":' + "[" * k + "]" * k + "}"
        ),
        # Escapes that decode to NUL or lone surrogates, in each string field.
        st.sampled_from(["content", "model", "ref", "type", "extra"]).flatmap(
            lambda name: st.sampled_from(["\\u0000", "\\ud800", "\\udfff", "\\ud83d", "x\\udc00y"]).map(
                lambda esc: json.dumps({"type": "chat.send", "conversation": None, "content": "hi"})[:-1]
                + f',"{name}":"{esc}"' + "}"
            )
        ),
        # Around the frame limit.
        st.integers(min_value=MAX_FRAME - 2, max_value=MAX_FRAME + 2).map(
            lambda n: padded({"type": "conversation.open", "conversation": world.alice_conversation}, n)
        ),
        st.integers(min_value=MAX_FRAME + 1, max_value=MAX_FRAME * 3).map(lambda n: "x" * n),
    )


def padded(frame: dict, length: int) -> str:
    """`frame` as JSON of exactly `length` characters (an ignored `pad` field)."""
    text = json.dumps({**frame, "pad": ""})
    return text[:-2] + "x" * (length - len(text)) + text[-2:]


def frames_strategy(world: World):
    texts = st.one_of(object_frames(world), valid_shaped_frames(world), raw_texts(world))
    return st.lists(
        st.one_of(texts.map(lambda t: (t, None)), st.binary(max_size=40).map(lambda b: (None, b))),
        min_size=1,
        max_size=12,
    )


FUZZ = hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


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


async def short_answers(session: Session, queued: int = 12) -> None:
    """Keep short replies queued in the emulator, so that an accepted chat.send
    ends fast (one kept-alive client: a control call each is cheap)."""
    if session.control is None:
        session.control = httpx.AsyncClient(base_url=session.world.emulator.url, trust_env=False, timeout=5)
    stats = await session.control.get("/_emulator/stats")
    for _ in range(max(queued - stats.json()["queued"], 0)):
        response = await session.control.post(
            "/_emulator/next", json={"reply": "Short answer.", "interval_ms": 0, "chunk_chars": 4}
        )
        response.raise_for_status()


async def run_example(session: Session, items) -> None:
    await session.ensure()
    await short_answers(session)
    for text, data in items:
        await check_frame(session, text, data)
    await settle(session.world)
    await check_still_serves(session)
    await bob_is_untouched(session.world)
    session.clean = True


@FUZZ
@given(data=st.data())
async def test_fuzzed_frames_v1(v1, data):
    await run_example(v1, data.draw(v1.strategy("frames", frames_strategy), label="frames"))


@FUZZ
@given(data=st.data())
async def test_fuzzed_frames_v2(v2, data):
    await run_example(v2, data.draw(v2.strategy("frames", frames_strategy), label="frames"))


@hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_fuzzed_valid_shaped_frames_never_touch_bob(v1, data):
    """Every command with ids drawn from Alice's, Bob's and random ones."""
    frames = v1.strategy("valid", lambda w: st.lists(valid_shaped_frames(w), min_size=1, max_size=15))
    items = data.draw(frames, label="frames")
    await run_example(v1, [(text, None) for text in items])


# ---- the cases the fuzzing found, and their neighbours, one by one ---------------------------


HOSTILE = [
    # `type` that is not a string, nor even hashable.
    '{"type":[]}',
    '{"type":{"x":1}}',
    '{"type":["chat.send"],"conversation":null,"content":"x"}',
    '{"type":5}',
    '{"type":null}',
    '{"type":true}',
    '{"type":1.5}',
    # Lone surrogates (JSON escapes are the only way to send them).
    '{"type":"chat.send","conversation":null,"content":"\\ud800"}',
    '{"type":"chat.send","conversation":null,"content":"ok \\udfff ok"}',
    '{"type":"chat.send","conversation":null,"content":"x","model":"\\ud83d"}',
    '{"type":"chat.send","conversation":null,"content":"x","ref":"\\ud800"}',
    '{"type":"nope","ref":"\\ud800"}',
    '{"type":"chat.stop","message":"x","ref":"\\udc00"}',
    '{"type":"chat.send","conversation":null,"content":"x","extra":"\\ud800"}',
    # NUL (PostgreSQL cannot store it).
    '{"type":"chat.send","conversation":null,"content":"a\\u0000b"}',
    '{"type":"chat.send","conversation":null,"content":"x","model":"a\\u0000"}',
    '{"type":"chat.send","conversation":null,"content":"x","ref":"\\u0000"}',
    # A model id longer than the column that stores it (Message.model: 100).
    '{"type":"chat.send","conversation":null,"content":"x","model":"' + "m" * 150 + '"}',
    # A bad model with a new conversation: refused, so no conversation may be left behind.
    '{"type":"chat.send","conversation":null,"content":"x","model":5}',
    '{"type":"chat.send","conversation":null,"content":"x","model":"' + "m" * 201 + '"}',
    # Ids past 64 bits, negative, floats, and a number too long to parse.
    '{"type":"conversation.open","conversation":9223372036854775808}',
    '{"type":"conversation.open","conversation":9223372036854775807}',
    '{"type":"chat.stop","message":-9223372036854775809}',
    '{"type":"chat.regenerate","message":100000000000000000000000000000}',
    '{"type":"chat.stop","message":1e400}',
    '{"type":"chat.stop","message":NaN}',
    '{"type":"conversation.open","conversation":' + "9" * 5000 + "}",
    '{"type":"chat.send","conversation":1.0,"content":"x"}',
    '{"type":"chat.send","conversation":null,"content":"x","parent":9223372036854775808}',
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: t[:70])
async def test_hostile_frame_is_answered_and_the_socket_lives(v1, text):
    await v1.ensure()
    await check_frame(v1, text)
    await settle(v1.world)
    await check_still_serves(v1)
    await bob_is_untouched(v1.world)


async def test_binary_and_empty_frames(v2):
    await v2.ensure()
    for data in (b"", b"\x00", b'{"type":"conversation.open","conversation":1}', bytes(range(256))):
        await check_frame(v2, None, data)
    await check_frame(v2, "")
    await check_still_serves(v2)


# ---- frame and message size --------------------------------------------------------------------


async def test_frame_at_the_limit_is_read_and_one_over_is_refused(v1):
    world = v1.world
    await v1.ensure()
    at_limit = padded({"type": "conversation.open", "conversation": world.alice_conversation}, MAX_FRAME)
    assert len(at_limit) == MAX_FRAME
    frames = await check_frame(v1, at_limit)
    assert [f["type"] for f in frames if isinstance(f, dict)] == ["history"]
    over = padded({"type": "conversation.open", "conversation": world.alice_conversation}, MAX_FRAME + 1)
    await v1.send_text(over)
    assert (await v1.probe()) == [{"type": "error", "code": "too_long", "detail": "The frame is too large."}]
    await check_still_serves(v1)


@pytest.mark.parametrize("char", ["x", "é", "я", "中", "🙂"], ids=["ascii", "latin", "cyrillic", "cjk", "emoji"])
async def test_message_limit_counts_characters_not_bytes(v1, char):
    """CHAT_MAX_MESSAGE_CHARS characters are accepted and saved whole, one more is
    refused with nothing saved, however many UTF-8 bytes a character takes.
    Frames are sent as a browser's JSON.stringify writes them: raw UTF-8."""
    world = v1.world
    await v1.ensure()
    before = await alice_counts(world)
    too_long = json.dumps(
        {"type": "chat.send", "conversation": None, "content": char * (MAX_CHARS + 1), "ref": "over"},
        ensure_ascii=False,
    )
    frames = await check_frame(v1, too_long)
    assert [f["code"] for f in frames if f.get("type") == "error"] == ["too_long"]
    assert await alice_counts(world) == before

    at_limit = json.dumps(
        {"type": "chat.send", "conversation": None, "content": char * MAX_CHARS, "ref": "at"},
        ensure_ascii=False,
    )
    frames = await check_frame(v1, at_limit)
    assert not [f for f in frames if f.get("type") == "error"]
    # The saved message comes through the conversation's group: maybe after the probe.
    while not any(f.get("type") == "message" and f.get("ref") == "at" for f in frames):
        frames.append(await v1.receive())
    user_frame = next(f for f in frames if f.get("type") == "message" and f.get("ref") == "at")
    assert user_frame["message"]["content"] == char * MAX_CHARS
    saved = await Message.objects.aget(pk=user_frame["message"]["id"])
    assert len(saved.content) == MAX_CHARS and saved.content == char * MAX_CHARS
    await settle(world)


@pytest.mark.parametrize("char", ["я", "🙂"], ids=["cyrillic", "emoji"])
async def test_message_at_the_limit_is_accepted_with_json_escapes_too(v1, char):
    """The same JSON value with non-ASCII written as \\u escapes (Python's json.dumps
    default, and what many clients send): the content is at the limit, so it is
    accepted. An escaped character takes 6 characters of the frame, an emoji 12."""
    world = v1.world
    await v1.ensure()
    escaped = json.dumps({"type": "chat.send", "conversation": None, "content": char * MAX_CHARS, "ref": "esc"})
    assert "\\u" in escaped
    frames = await check_frame(v1, escaped)
    errors = [f for f in frames if f.get("type") == "error"]
    assert not errors, f"a message of {MAX_CHARS} characters was refused: {errors}"
    await settle(world)


# ---- the production stack: daphne on PostgreSQL -----------------------------------------------


PASSWORD = "a-long-unusual-passphrase-42"


@pytest.mark.multiprocess
def test_hostile_strings_through_daphne_on_postgresql(postgres_url, emulator_server):
    """What SQLite and the in-process communicator let through fails for real:
    PostgreSQL refuses NUL and over-long varchar values, and daphne must encode
    every text frame as UTF-8. Each hostile frame gets one answer and the socket
    stays open (no close 1011); a refused frame leaves no empty conversation."""
    env = site_env(database_url=postgres_url, gptalk_url=emulator_server.url)
    manage("migrate", "--noinput", env=env)
    site = SiteProcess(env=env)
    hostile = [
        '{"type":"chat.send","conversation":null,"content":"a\\u0000b","ref":"nul"}',
        '{"type":"chat.send","conversation":null,"content":"x","model":"a\\u0000","ref":"nul-model"}',
        '{"type":"chat.send","conversation":null,"content":"x","model":"' + "m" * 150 + '","ref":"long-model"}',
        '{"type":"chat.send","conversation":null,"content":"\\ud800","ref":"surrogate"}',
        '{"type":"nope","ref":"\\ud800"}',
        '{"type":[]}',
        '{"type":"conversation.open","conversation":9223372036854775808}',
    ]

    async def run(cookie: str) -> list[tuple[str, list[dict]]]:
        results = []
        async with websockets.connect(
            site.ws_url, additional_headers={"Cookie": cookie, "Origin": site.url}, open_timeout=10
        ) as socket:
            for number, text in enumerate(hostile):
                await socket.send(text)
                probe = f"probe-{number}"
                await socket.send(json.dumps({"type": "chat.stop", "message": 0, "ref": probe}))
                frames = []
                while True:
                    try:
                        frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=15))
                    except websockets.exceptions.ConnectionClosed as closed:
                        raise AssertionError(f"{text[:80]!r} closed the socket: {closed}") from None
                    if isinstance(frame, dict) and frame.get("ref") == probe:
                        break
                    frames.append(frame)
                results.append((text, frames))
                # Let an accepted answer end before the next frame.
                if any(isinstance(f, dict) and f.get("type") == "message" for f in frames):
                    while not any(isinstance(f, dict) and f.get("type") == "done" for f in frames):
                        frames.append(json.loads(await asyncio.wait_for(socket.recv(), timeout=15)))
        return results

    try:
        person = Browser(site)
        person.signup("fuzzer", PASSWORD)
        cookie = person.cookie_header()
        person.close()
        results = asyncio.run(run(cookie))
    finally:
        site.stop()
    for text, frames in results:
        errors = [f for f in frames if isinstance(f, dict) and f.get("type") == "error"]
        assert len(errors) <= 1 and all(e["code"] in KNOWN_CODES for e in errors), (text, frames)
    import psycopg

    with psycopg.connect(postgres_url.replace("postgres://", "postgresql://")) as connection:
        empty = connection.execute(
            "SELECT count(*) FROM chat_conversation c WHERE NOT EXISTS "
            "(SELECT 1 FROM chat_message m WHERE m.conversation_id = c.id)"
        ).fetchone()[0]
    assert empty == 0, "a refused chat.send left an empty conversation behind"
    assert "Traceback" not in site.output(), site.output()[-3000:]
