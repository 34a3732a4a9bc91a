"""Hostile frames on the chat socket, one by one: the cases the fuzzing of
tests/test_security_fuzz.py found and their neighbours, the frame and message
size limits, and hostile strings through daphne on PostgreSQL.

Each frame gets at most one `error` frame with a documented code, saves nothing
when refused, and the socket stays open and keeps serving Alice's own
conversation; nothing of Bob's reaches her (tests/fuzz/session.py checks every
frame she gets).
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from chat.models import Message
from tests.fixtures.site import Browser, SiteProcess, manage, site_env
from tests.fuzz.session import alice_counts, bob_is_untouched, check_frame, check_still_serves, settle
from tests.fuzz.strategies import padded
from tests.fuzz.world import KNOWN_CODES, MAX_CHARS, MAX_FRAME

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]
pytest_plugins = ["tests.fixtures.services", "tests.fuzz.world", "tests.fuzz.session"]



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
    # The saved message's frame may come after the probe's.
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
