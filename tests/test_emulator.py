"""The GPTalk emulator, tested as a real subprocess over loopback (tests/fixtures/emulator.py).

The session emulator runs with --interval-ms 2 --chunk-chars 8.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from chat.emulator.config import TEXT_QUOTA
from chat.emulator.replies import default_reply
from chat.emulator.stream import FAULT_AFTER_EVENTS, rewritten
from chat.management.commands.gptalk_emulator import Command
from tests.fixtures.emulator import REPO_ROOT
from tests.original_gptalk import GPTalk, format_prompt

LOGIN = "/api/chatgpt/user/login"
TEXT = "/api/chatgpt/chatapi/text"
STREAM = "/api/chatgpt/chatapi/stream"
DROP_DEADLINE = 1.0  # seconds: "active_streams drops well under 1 s"
LONG_REPLY = "Lorem ipsum — «dolor» sit amet 🙂. " * 20


# --- helpers ---------------------------------------------------------------------


def client_for(emulator) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, timeout=10, trust_env=False)


def aclient_for(emulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=emulator.url, timeout=10, trust_env=False)


def json_of(response: httpx.Response) -> dict:
    assert response.headers["content-type"] == "application/json"
    return response.json()


def login(client: httpx.Client) -> dict:
    response = client.post(LOGIN, json={"fingerprint": "0" * 32, "platform": "fingerprint"})
    assert response.status_code == 200
    return json_of(response)["data"]


def text(client: httpx.Client, token: str, content: str = "hello") -> httpx.Response:
    return client.post(
        TEXT, json={"content": content, "accept": "stream"}, headers={"authorization": f"Bearer {token}"}
    )


def stream_token(client: httpx.Client, token: str, content: str = "hello") -> str:
    response = text(client, token, content)
    assert response.status_code == 200
    return json_of(response)["data"]["token"]


def lines_of(body: bytes) -> list[bytes]:
    """The stream's lines; every line, the last included, must end in \\n."""
    assert body.endswith(b"\n")
    return body[:-1].split(b"\n")


def contents_of(lines: list[bytes]) -> list[str]:
    return [json.loads(line[len(b"data: ") :])["content"] for line in lines if line != b"data: [DONE]"]


def reply_lines(client: httpx.Client, content: str = "hello") -> list[bytes]:
    """Log in, ask, and return the whole stream as lines."""
    response = client.get(STREAM, params={"token": stream_token(client, login(client)["token"], content)})
    assert response.status_code == 200
    return lines_of(response.content)


async def wait_until(condition, deadline: float) -> None:
    """Poll an async condition until it holds; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not await condition():
        assert time.monotonic() < end, f"condition not met within {deadline} s"
        await asyncio.sleep(0.01)


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
        assert before + 1 <= data["expires_at"] <= before + 2
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


# --- client disconnects --------------------------------------------------------


async def active_streams(emulator) -> int:
    return (await emulator.astats())["active_streams"]


async def open_stream(client: httpx.AsyncClient) -> tuple[httpx.Response, AsyncIterator[str]]:
    """Start a stream; return the open response and its line iterator, after the first event.

    Keep the iterator referenced: a discarded one is finalized by the garbage
    collector, which closes the connection at a moment the test does not choose.
    """
    token = json_of(await client.post(LOGIN, json={}))["data"]["token"]
    response = await client.post(TEXT, json={"content": "x"}, headers={"authorization": f"Bearer {token}"})
    request = client.build_request("GET", STREAM, params={"token": json_of(response)["data"]["token"]})
    stream = await client.send(request, stream=True)
    lines = stream.aiter_lines()
    assert (await anext(lines)).startswith("data: ")
    return stream, lines


@pytest.mark.parametrize(
    "spec",
    [
        {"interval_ms": 50},  # paced: the sender is mostly asleep between events
        {"interval_ms": 60_000},  # one long pause
        {"interval_ms": 0, "fault": "stream_stall"},  # stalled: nothing left to send
    ],
    ids=["paced", "long-pause", "stalled"],
)
async def test_active_streams_drop_when_the_client_disconnects(emulator, spec):
    await emulator.anext(reply=LONG_REPLY, chunk_chars=4, **spec)
    async with aclient_for(emulator) as client:
        stream, lines = await open_stream(client)
        assert await active_streams(emulator) == 1
        await lines.aclose()
        await stream.aclose()  # closes the connection mid-body

        async def dropped() -> bool:
            return await active_streams(emulator) == 0

        await wait_until(dropped, DROP_DEADLINE)


async def test_active_streams_drop_on_a_raw_socket_close(emulator):
    """A client that just closes its TCP socket, without reading to the end."""
    await emulator.anext(reply=LONG_REPLY, chunk_chars=1, interval_ms=20)
    async with aclient_for(emulator) as client:
        token = json_of(await client.post(LOGIN, json={}))["data"]["token"]
        response = await client.post(
            TEXT, json={"content": "x"}, headers={"authorization": f"Bearer {token}"}
        )
        stream_token_ = json_of(response)["data"]["token"]
    host, port = emulator.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {STREAM}?token={stream_token_} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
    assert b"data: " in await reader.readuntil(b"data: ")
    assert await active_streams(emulator) == 1
    writer.close()
    await writer.wait_closed()

    async def dropped() -> bool:
        return await active_streams(emulator) == 0

    await wait_until(dropped, DROP_DEADLINE)


async def test_many_concurrent_streams(emulator):
    async def one(session: aiohttp.ClientSession, prompt: str) -> str:
        async with session.post(emulator.url + LOGIN, json={}) as response:
            token = (await response.json())["data"]["token"]
        headers = {"authorization": f"Bearer {token}"}
        async with session.post(emulator.url + TEXT, json={"content": prompt}, headers=headers) as response:
            stream = (await response.json())["data"]["token"]
        async with session.get(emulator.url + STREAM, params={"token": stream}) as response:
            return contents_of(lines_of(await response.read()))[-1]

    prompts = [f"prompt {n}" for n in range(200)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        replies = await asyncio.gather(*(one(session, prompt) for prompt in prompts))
    assert replies == [default_reply(prompt) for prompt in prompts]
    stats = await emulator.astats()
    assert (stats["streams"], stats["active_streams"], stats["rejected"]) == (200, 0, 0)


# --- the original gpt4free client ------------------------------------------------


def original_client(emulator) -> type[GPTalk]:
    """The original provider pointed at the emulator, with fresh class state."""
    return type("OriginalGPTalk", (GPTalk,), {"url": emulator.url, "_auth": None, "used_times": 0})


async def test_original_client_gets_the_emulators_reply(emulator):
    messages = [
        {"role": "user", "content": "Привет, как дела?"},
        {"role": "assistant", "content": "Привет! У меня все хорошо, спасибо за вопрос."},
        {"role": "user", "content": "Tell me a joke"},
    ]
    client = original_client(emulator)
    deltas = [delta async for delta in client.create_async_generator("gpt-3.5-turbo", messages)]
    assert len(deltas) > 1
    assert "".join(deltas) == default_reply(format_prompt(messages))


async def test_original_client_six_sequential_calls_log_in_again(emulator):
    client = original_client(emulator)
    for n in range(6):
        messages = [{"role": "user", "content": f"question {n}"}]
        reply = "".join([delta async for delta in client.create_async_generator("", messages)])
        assert reply == default_reply(f"question {n}")
    stats = await emulator.astats()
    assert (stats["logins"], stats["texts"], stats["streams"], stats["rejected"]) == (2, 6, 6, 0)


async def test_original_client_with_a_scripted_unicode_reply(emulator):
    reply = "Ответ — «да» 🎉\nwith a second line\n"
    await emulator.anext(reply=reply, chunk_chars=1)
    client = original_client(emulator)
    messages = [{"role": "user", "content": "hi"}]
    assert "".join([d async for d in client.create_async_generator("gpt-3.5-turbo", messages)]) == reply


# --- logging -------------------------------------------------------------------


def test_tokens_are_never_logged(emulator_factory):
    quiet = emulator_factory(interval_ms=0)
    with client_for(quiet) as client:
        token = login(client)["token"]
        issued = stream_token(client, token)
        client.get(STREAM, params={"token": issued})
        client.get(STREAM, params={"token": issued})
        client.post(TEXT, json={"content": "x"}, headers={"authorization": "Bearer guessed-token"})
    quiet.stop()
    output = quiet.output()
    for secret in (token, issued, "guessed-token"):
        assert secret not in output
