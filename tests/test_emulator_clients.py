"""The emulator as its clients meet it, as a real subprocess over loopback: streams
end when a client goes away, the original gpt4free client (tests/original_gptalk.py)
works against it unchanged, and no token reaches its log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from chat.emulator.replies import default_reply
from tests.fixtures.emulator_http import (
    DROP_DEADLINE,
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
    stream_token,
    wait_until,
)
from tests.original_gptalk import GPTalk, format_prompt

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

