"""The emulator's scripted faults and its control API (/_emulator/next, stats,
reset), as a real subprocess over loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from chat.emulator.replies import default_reply
from chat.emulator.stream import FAULT_AFTER_EVENTS, rewritten
from tests.fixtures.emulator_http import (
    LOGIN,
    LONG_REPLY,
    STREAM,
    TEXT,
    aclient_for,
    client_for,
    contents_of,
    json_of,
    lines_of,
    login,
    reply_lines,
    stream_token,
    text,
)

# --- faults --------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status"), [("login_500", 500), ("login_no_data", 200)])
def test_login_faults(emulator, fault, status):
    emulator.next(fault=fault)
    with client_for(emulator) as client:
        response = client.post(LOGIN, json={})
        assert response.status_code == status
        assert "data" not in json_of(response)
        assert login(client)["token"]  # used once: the next login is normal
    stats = emulator.stats()
    assert (stats["faults"], stats["logins"]) == (1, 1)


def test_login_faults_wait_for_a_login_and_text_specs_for_a_text(emulator):
    with client_for(emulator) as client:
        token = login(client)["token"]
        emulator.next(fault="login_500")
        emulator.next(reply="scripted")
        lines = lines_of(client.get(STREAM, params={"token": stream_token(client, token)}).content)
        assert contents_of(lines)[-1] == "scripted"
        assert client.post(LOGIN, json={}).status_code == 500


@pytest.mark.parametrize(("fault", "status"), [("text_500", 500), ("text_429", 429), ("text_no_data", 200)])
def test_text_faults(emulator, fault, status):
    emulator.next(fault=fault)
    with client_for(emulator) as client:
        token = login(client)["token"]
        response = text(client, token)
        assert response.status_code == status
        assert "data" not in json_of(response)
        assert stream_token(client, token)  # used once
    assert emulator.stats()["faults"] == 1


def stream_with_fault(emulator, fault: str) -> list[bytes]:
    emulator.next(fault=fault, reply=LONG_REPLY, chunk_chars=10)
    with client_for(emulator) as client:
        return reply_lines(client)


def test_stream_cut_ends_without_done(emulator):
    lines = stream_with_fault(emulator, "stream_cut")
    assert contents_of(lines) == [LONG_REPLY[:end] for end in range(10, 10 * FAULT_AFTER_EVENTS + 1, 10)]


def test_stream_malformed_sends_a_line_that_is_not_json(emulator):
    lines = stream_with_fault(emulator, "stream_malformed")
    assert len(lines) == FAULT_AFTER_EVENTS + 1
    assert contents_of(lines[:-1]) == [LONG_REPLY[:end] for end in range(10, 10 * FAULT_AFTER_EVENTS + 1, 10)]
    assert lines[-1].startswith(b"data: ")
    with pytest.raises(ValueError):
        json.loads(lines[-1][6:])


def test_stream_rewrite_changes_earlier_content_then_finishes(emulator):
    lines = stream_with_fault(emulator, "stream_rewrite")
    assert lines[-1] == b"data: [DONE]"
    contents = contents_of(lines)
    final = contents[-1]
    assert final == rewritten(LONG_REPLY)
    assert any(not new.startswith(old) for old, new in itertools.pairwise(contents))
    naive = contents[0] + "".join(new[len(old) :] for old, new in itertools.pairwise(contents))
    assert naive != final


async def test_stream_stall_stops_sending_but_keeps_the_connection(emulator):
    await emulator.anext(fault="stream_stall", reply=LONG_REPLY, chunk_chars=10, interval_ms=0)
    async with aclient_for(emulator) as client:
        token = json_of(await client.post(LOGIN, json={}))["data"]["token"]
        response = await client.post(
            TEXT, json={"content": "x"}, headers={"authorization": f"Bearer {token}"}
        )
        params = {"token": json_of(response)["data"]["token"]}
        async with client.stream("GET", STREAM, params=params) as stream:
            lines = stream.aiter_lines()
            received = [await anext(lines) for _ in range(FAULT_AFTER_EVENTS)]
            assert (
                contents_of([line.encode() for line in received])[-1] == LONG_REPLY[: 10 * FAULT_AFTER_EVENTS]
            )
            pending = asyncio.ensure_future(anext(lines))
            done, _ = await asyncio.wait({pending}, timeout=0.3)
            assert not done  # nothing more arrives...
            assert (await emulator.astats())["active_streams"] == 1  # ...yet the stream is open
            pending.cancel()


# --- control API, counts and reset -----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"replay": "typo"}',
        b'{"reply": 5}',
        b'{"reply": "\\ud800"}',
        b'{"interval_ms": "5"}',
        b'{"interval_ms": true}',
        b'{"interval_ms": -1}',
        b'{"interval_ms": 1.5}',
        b'{"chunk_chars": 0}',
        b'{"fault": "nope"}',
        b'{"fault": 1}',
        b'{"fault": "login_500", "reply": "x"}',
    ],
)
def test_control_next_validates(emulator, body):
    with client_for(emulator) as client:
        response = client.post("/_emulator/next", content=body)
    assert response.status_code == 400
    assert json_of(response)["message"]
    assert emulator.stats()["queued"] == 0


def test_control_next_accepts_empty_and_null_fields(emulator):
    assert emulator.next() == {"ok": True, "queued": 1}
    assert emulator.next(reply=None, interval_ms=None, chunk_chars=None, fault=None)["queued"] == 2
    with client_for(emulator) as client:
        assert contents_of(reply_lines(client))[-1] == default_reply("hello")


def test_stats_count_and_reset_clears_everything(emulator):
    with client_for(emulator) as client:
        token = login(client)["token"]
        used = stream_token(client, token)
        client.get(STREAM, params={"token": used})
        unused = stream_token(client, token)
        client.post(TEXT, json={"content": "x"})  # 401
        client.get(STREAM, params={"token": used})  # already used
        emulator.next(reply="queued")
        assert emulator.stats() == {
            "logins": 1,
            "texts": 2,
            "streams": 1,
            "active_streams": 0,
            "rejected": 2,
            "faults": 0,
            "queued": 1,
            "last_prompts": ["hello", "hello"],
        }
        emulator.reset()
        stats = emulator.stats()
        assert stats.pop("last_prompts") == []
        assert set(stats.values()) == {0}
        # Tokens are forgotten too.
        assert text(client, token).status_code == 401
        assert client.get(STREAM, params={"token": unused}).status_code == 404

