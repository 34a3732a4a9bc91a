"""A small model of the protocol: what docs/websocket-protocol.md says the server
must answer to one frame (`expected()`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from chat.models import Conversation, Message
from tests.fuzz.world import MAX_CHARS, MAX_FRAME, TYPES, UNSTORABLE, World

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


def unstorable(value) -> bool:
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
    if unstorable(frame):
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
            if (
                parent is not missing
                and parent is not None
                and not (
                    _in_db_range(parent)
                    and await Message.objects.filter(pk=parent, conversation_id=conversation).aexists()
                )
            ):
                codes.add("not_found")
    return Expect(True, codes | maybe) if codes else Expect(None if maybe else False, maybe)

