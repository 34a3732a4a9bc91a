"""The GPTalk emulator, tested as a real subprocess over loopback (tests/fixtures/emulator.py):
the three endpoints, the replies, the tokens and the command line. Faults and the
control API are in test_emulator_faults.py; disconnects, the original client and
the logs in test_emulator_clients.py.

The session emulator runs with --interval-ms 2 --chunk-chars 8.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from chat.emulator.config import TEXT_QUOTA
from chat.emulator.replies import default_reply
from chat.management.commands.gptalk_emulator import Command
from tests.fixtures.emulator import REPO_ROOT
from tests.fixtures.emulator_http import (
    LOGIN,
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
    wait_until,
)
from tests.original_gptalk import format_prompt

# --- paths and shapes ----------------------------------------------------------


def test_health(emulator):
    with client_for(emulator) as client:
        assert json_of(client.get("/_emulator/health")) == {"ok": True}


def test_login_shape(emulator):
    with client_for(emulator) as client:
        before = time.time()
        data = login(client)
    assert isinstance(data["token"], str) and data["token"]
    assert isinstance(data["expires_at"], int)
    assert before + 3600 <= data["expires_at"] <= time.time() + 3601


def test_text_shape(emulator):
    with client_for(emulator) as client:
        response = text(client, login(client)["token"])
    assert response.status_code == 200
    assert isinstance(json_of(response)["data"]["token"], str)


def test_stream_shape(emulator):
    with client_for(emulator) as client:
        before = time.time()
        token = stream_token(client, login(client)["token"], "Hi there")
        response = client.get(STREAM, params={"token": token})
        after = time.time()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = lines_of(response.content)
    assert lines[-1] == b"data: [DONE]"
    assert all(line.startswith(b"data: ") for line in lines)
    events = [json.loads(line[6:]) for line in lines[:-1]]
    stamps = [event["ts"] for event in events]
    assert all(isinstance(ts, float) for ts in stamps)
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after
    contents = [event["content"] for event in events]
    reply = default_reply("Hi there")
    assert contents[-1] == reply
    # Cumulative, 8 characters more per event (the session emulator's --chunk-chars).
    assert contents == [reply[:end] for end in range(8, len(reply) + 8, 8)]


def test_original_request_headers_and_body_are_accepted(emulator):
    """The old client sends extra fields and browser headers; the emulator ignores them."""
    body = {"content": "Hi", "accept": "stream", "from": 1, "model": "gpt-3.5-turbo", "created_at": 1}
    with client_for(emulator) as client:
        token = login(client)["token"]
        headers = {"authorization": f"Bearer {token}", "x-auth-appid": "2229", "origin": "https://gptalk.net"}
        assert "data" in json_of(client.post(TEXT, json=body, headers=headers))


# --- replies -------------------------------------------------------------------


def test_default_reply_is_deterministic_and_rich(emulator):
    prompt = format_prompt(
        [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "How do I sort a list in Python?"},
        ]
    )
    with client_for(emulator) as client:
        first = contents_of(reply_lines(client, prompt))[-1]
        second = contents_of(reply_lines(client, prompt))[-1]
        other = contents_of(reply_lines(client, "something else"))[-1]
    assert first == second == default_reply(prompt)
    assert other != first
    assert 500 <= len(first) <= 900
    assert "local GPTalk emulator" in first and "offline" in first
    assert "«How do I sort a list in Python?»" in first and "first question" not in first
    assert "\n- " in first and "```python\n" in first and "|---|---|" in first and "\n\n" in first
    assert all(char in first for char in "—«»✨")


def test_default_reply_quotes_a_short_part_of_long_lines():
    reply = default_reply("word " * 100)
    assert "«word word" in reply and "…»" in reply
    assert 500 <= len(reply) <= 900


def test_scripted_reply_and_chunking(emulator):
    emulator.next(reply="abcdefghij", chunk_chars=3)
    with client_for(emulator) as client:
        lines = reply_lines(client)
        assert contents_of(lines) == ["abc", "abcdef", "abcdefghi", "abcdefghij"]
        assert lines[-1] == b"data: [DONE]"
        # The spec was used once: the next reply is the default again.
        assert contents_of(reply_lines(client))[-1] == default_reply("hello")


def test_scripted_unicode_reply_is_sent_as_utf8(emulator):
    reply = "Привет — «мир» 🌍 ok"
    emulator.next(reply=reply, chunk_chars=1, interval_ms=0)
    with client_for(emulator) as client:
        lines = reply_lines(client)
    assert "🌍".encode() in b"\n".join(lines)
    assert contents_of(lines) == [reply[:end] for end in range(1, len(reply) + 1)]


def test_stats_show_the_last_prompts(emulator):
    with client_for(emulator) as client:
        token = login(client)["token"]
        client.post(TEXT, content=b"{}", headers={"authorization": f"Bearer {token}"})  # not recorded
        for n in range(25):
            if n == 24:
                emulator.next(fault="text_500")  # a faulted request still shows what was sent
            text(client, login(client)["token"], f"prompt {n}")
    assert emulator.stats()["last_prompts"] == [f"prompt {n}" for n in range(5, 25)]


def test_queue_is_fifo(emulator):
    emulator.next(reply="one")
    emulator.next(reply="two")
    assert emulator.stats()["queued"] == 2
    with client_for(emulator) as client:
        assert [contents_of(reply_lines(client))[-1] for _ in range(2)] == ["one", "two"]


def test_empty_reply_streams_only_done(emulator):
    emulator.next(reply="")
    with client_for(emulator) as client:
        assert reply_lines(client) == [b"data: [DONE]"]


def test_interval_ms_paces_events(emulator):
    """A lower bound only: pacing can be slower on a busy machine, never faster."""
    emulator.next(reply="abcd", chunk_chars=1, interval_ms=150)
    with client_for(emulator) as client:
        events = [json.loads(line[6:]) for line in reply_lines(client)[:-1]]
    assert len(events) == 4
    assert events[-1]["ts"] - events[0]["ts"] >= 3 * 0.150 * 0.9


# --- tokens --------------------------------------------------------------------


def test_login_token_serves_five_texts_then_answers_without_data(emulator):
    with client_for(emulator) as client:
        token = login(client)["token"]
        for _ in range(TEXT_QUOTA):
            stream_token(client, token)
        for _ in range(2):
            response = text(client, token)
            assert response.status_code == 200
            body = json_of(response)
            assert "data" not in body and body["code"] == 429
        stream_token(client, login(client)["token"])  # a new login starts afresh
    stats = emulator.stats()
    assert (stats["logins"], stats["texts"], stats["rejected"]) == (2, TEXT_QUOTA + 1, 2)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token", "Bearer", "Basic dXNlcjpwYXNz", ""],
)
def test_text_without_a_valid_bearer_token_is_401(emulator, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    with client_for(emulator) as client:
        login(client)
        response = client.post(TEXT, json={"content": "hi"}, headers=headers)
    assert response.status_code == 401
    assert "data" not in json_of(response)
    assert emulator.stats()["rejected"] == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b"{}", b'{"content": 5}', b'{"content": null}', b"\xff\xfe", b""],
)
def test_text_body_is_validated(emulator, body):
    emulator.next(reply="kept for the next valid request")
    with client_for(emulator) as client:
        token = login(client)["token"]
        response = client.post(TEXT, content=body, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 400
        assert "data" not in json_of(response)
        # Neither the queued spec nor a use of the login was spent.
        assert contents_of(reply_lines(client))[-1] == "kept for the next valid request"
        for _ in range(TEXT_QUOTA):
            stream_token(client, token)
    assert emulator.stats()["rejected"] == 1


async def test_login_token_expires_at_expires_at(emulator_factory):
    short = emulator_factory(token_ttl=1, interval_ms=0)
    async with aclient_for(short) as client:
        before = time.time()
        data = json_of(await client.post(LOGIN, json={}))["data"]
        after = time.time()
        # A whole second at or after the moment of login + the 1 s lifetime.
        assert before + 1 <= data["expires_at"] <= math.ceil(after + 1)
        headers = {"authorization": f"Bearer {data['token']}"}
        assert (await client.post(TEXT, json={"content": "hi"}, headers=headers)).status_code == 200

        async def expired() -> bool:
            return time.time() >= data["expires_at"]

        await wait_until(expired, deadline=3)
        response = await client.post(TEXT, json={"content": "hi"}, headers=headers)
    assert response.status_code == 401
    assert "data" not in json_of(response)


def test_stream_tokens_are_single_use(emulator):
    with client_for(emulator) as client:
        token = stream_token(client, login(client)["token"])
        assert client.get(STREAM, params={"token": token}).status_code == 200
        for params in ({"token": token}, {"token": "never-issued"}, {}):
            response = client.get(STREAM, params=params)
            assert 400 <= response.status_code < 500
            assert "data" not in json_of(response)
    stats = emulator.stats()
    assert (stats["streams"], stats["rejected"]) == (1, 3)


def test_cli_options_apply(emulator_factory):
    custom = emulator_factory(interval_ms=0, chunk_chars=5, token_ttl=120)
    with client_for(custom) as client:
        before = time.time()
        data = login(client)
        assert before + 120 <= data["expires_at"] <= time.time() + 121
        response = client.get(STREAM, params={"token": stream_token(client, data["token"], "x")})
    reply = default_reply("x")
    assert contents_of(lines_of(response.content)) == [reply[:end] for end in range(5, len(reply) + 5, 5)]


def test_cli_defaults():
    options = vars(Command().create_parser("manage.py", "gptalk_emulator").parse_args([]))
    assert {name: options[name] for name in ("host", "port", "interval_ms", "chunk_chars", "token_ttl")} == {
        "host": "127.0.0.1",
        "port": 8765,
        "interval_ms": 20,
        "chunk_chars": 4,
        "token_ttl": 3600,
    }


@pytest.mark.parametrize("args", [["--chunk-chars", "0"], ["--interval-ms", "-1"], ["--token-ttl", "soon"]])
def test_cli_rejects_bad_options(args):
    result = subprocess.run(
        [sys.executable, "manage.py", "gptalk_emulator", "--port", "0", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert args[0] in result.stderr

