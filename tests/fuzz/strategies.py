"""Hypothesis strategies for hostile frames: any JSON, ids of everyone and of no
one, hostile strings (NUL, lone surrogates), sizes around the limits.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.fuzz.world import MAX_CHARS, MAX_FRAME, TYPES, World

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
