"""The emulator's OpenAI-compatible API (chat/emulator/openai_api.py), as a real subprocess.

The session emulator runs with --interval-ms 2 --chunk-chars 8. The last tests run
the official `openai` Python client against it: proof that it speaks the protocol.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from chat.emulator.openai_api import EMULATOR_MODELS
from chat.emulator.replies import default_reply
from chat.emulator.stream import FAULT_AFTER_EVENTS

COMPLETIONS = "/v1/chat/completions"
HANG = 20.0  # seconds: the "does not hang" bound, never a performance claim
REPLY = "Line one\u2028line two — «quotes» ✨😀 and a \"json\" \\ body."


def client_for(emulator) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, timeout=10, trust_env=False)


def ask(client: httpx.Client, content: str = "hello", **fields) -> httpx.Response:
    body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": content}], "stream": True}
    return client.post(COMPLETIONS, json={**body, **fields})


def events_of(body: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body; every event must end with a blank line."""
    assert body.endswith(b"\n\n")
    events = body[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events)
    return [event[len(b"data: ") :] for event in events]


def chunks_of(body: bytes) -> list[dict]:
    return [json.loads(e) for e in events_of(body) if e != b"[DONE]"]


def text_of(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


# --- the shape of the API --------------------------------------------------------------


def test_models_lists_the_emulator_models(emulator):
    with client_for(emulator) as client:
        response = client.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == list(EMULATOR_MODELS)
    assert all(m["object"] == "model" for m in body["data"])


def test_stream_shape(emulator):
    emulator.next(reply=REPLY, chunk_chars=5)
    with client_for(emulator) as client:
        response = ask(client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.content)
    assert events[-1] == b"[DONE]"
    chunks = chunks_of(response.content)
    first, *pieces, last = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in pieces] == [
        REPLY[i : i + 5] for i in range(0, len(REPLY), 5)
    ]
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert {c["id"] for c in chunks} == {first["id"]} and first["id"].startswith("chatcmpl-")
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gpt-3.5-turbo"
        assert isinstance(chunk["ts"], float)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_default_reply_for_a_conversation_and_the_prompt_is_recorded(emulator):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is GPTalk?"},
        {"role": "assistant", "content": "A chat."},
        {"role": "user", "content": [{"type": "text", "text": "And the emulator?"}]},
    ]
    with client_for(emulator) as client:
        response = ask(client, messages=messages, model="gpt-4o-mini")
    # The transcript the GPTalk client would send; the text parts of a content list joined.
    prompt = "System: Be brief.\nUser: What is GPTalk?\nAssistant: A chat.\nUser: And the emulator?\nAssistant:"
    assert text_of(chunks_of(response.content)) == default_reply(prompt)
    assert "«And the emulator?»" in default_reply(prompt)
    stats = emulator.stats()
    assert stats["last_prompts"] == [prompt]
    assert (stats["texts"], stats["streams"], stats["rejected"]) == (1, 1, 0)


def test_without_stream_one_json_answer(emulator):
    emulator.next(reply=REPLY)
    with client_for(emulator) as client:
        response = ask(client, stream=False)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": REPLY}
    assert body["choices"][0]["finish_reason"] == "stop"
    stats = emulator.stats()
    assert (stats["texts"], stats["streams"]) == (1, 0)


def test_bearer_token_is_optional(emulator):
    with client_for(emulator) as client:
        plain = ask(client, "hi")
        with_key = client.post(
            COMPLETIONS,
            json={"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers={"authorization": "Bearer sk-anything"},
        )
    assert plain.status_code == with_key.status_code == 200
    assert text_of(chunks_of(plain.content)) == text_of(chunks_of(with_key.content)) == default_reply("hi")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "gpt-3.5-turbo", "messages": []}',
        b'{"model": "gpt-3.5-turbo", "messages": [{"role": "wizard", "content": "x"}]}',
        b'{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": 5}]}',
        b'{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
    ],
)
def test_bad_bodies_are_400_and_keep_the_queue(emulator, body):
    emulator.next(reply="kept")
    with client_for(emulator) as client:
        response = client.post(COMPLETIONS, content=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"]
    stats = emulator.stats()
    assert (stats["rejected"], stats["queued"]) == (1, 1)


def test_unknown_model_is_404_like_openai(emulator):
    emulator.next(reply="kept")
    with client_for(emulator) as client:
        response = ask(client, model="llama-9000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert emulator.stats()["queued"] == 1


# --- the shared queue: scripted faults ------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("text_500", 500, None),
        ("text_429", 429, "rate_limit_exceeded"),
        ("openai_401", 401, "invalid_api_key"),
        ("openai_404", 404, "model_not_found"),
    ],
)
def test_error_faults(emulator, fault, status, code):
    emulator.next(fault=fault)
    with client_for(emulator) as client:
        response = ask(client)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert ask(client).status_code == 200  # one fault, one request
    assert emulator.stats()["faults"] == 1


def test_text_no_data_is_an_empty_answer(emulator):
    emulator.next(fault="text_no_data")
    with client_for(emulator) as client:
        response = ask(client)
    chunks = chunks_of(response.content)
    assert text_of(chunks) == ""
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert events_of(response.content)[-1] == b"[DONE]"


def test_stream_cut_ends_without_done_or_finish(emulator):
    emulator.next(reply=REPLY, chunk_chars=4, fault="stream_cut")
    with client_for(emulator) as client:
        response = ask(client)
    events = events_of(response.content)
    assert b"[DONE]" not in events
    chunks = chunks_of(response.content)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert text_of(chunks) == REPLY[: 4 * FAULT_AFTER_EVENTS]


def test_stream_malformed_sends_an_event_that_is_not_json(emulator):
    emulator.next(reply=REPLY, fault="stream_malformed")
    with client_for(emulator) as client:
        response = ask(client)
    events = events_of(response.content)
    assert b"[DONE]" not in events
    with pytest.raises(ValueError):
        json.loads(events[-1])
    assert all(json.loads(e) for e in events[:-1])


def test_stream_rewrite_continues_with_the_rewritten_text(emulator):
    emulator.next(reply=REPLY, chunk_chars=4, fault="stream_rewrite")
    with client_for(emulator) as client:
        response = ask(client)
    assert events_of(response.content)[-1] == b"[DONE]"
    text = text_of(chunks_of(response.content))
    assert text.startswith(REPLY[: 4 * FAULT_AFTER_EVENTS]) and text != REPLY


async def test_stream_stall_keeps_the_connection_until_the_client_leaves(emulator):
    await emulator.anext(reply=REPLY, chunk_chars=4, fault="stream_stall")
    timeout = httpx.Timeout(10, read=0.5)
    async with httpx.AsyncClient(base_url=emulator.url, timeout=timeout, trust_env=False) as client:
        body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "x"}], "stream": True}
        received = b""
        with pytest.raises(httpx.ReadTimeout):
            async with client.stream("POST", COMPLETIONS, json=body) as response:
                async for part in response.aiter_bytes():
                    received += part
    assert text_of(chunks_of(received)) == REPLY[: 4 * FAULT_AFTER_EVENTS]
    await until_no_active_streams(emulator)


@pytest.mark.parametrize("fault", ["stream_cut", "stream_malformed"])
def test_stream_faults_without_stream_give_a_broken_body(emulator, fault):
    emulator.next(reply=REPLY, fault=fault)
    with client_for(emulator) as client:
        response = ask(client, stream=False)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


async def until_no_active_streams(emulator) -> None:
    deadline = asyncio.get_running_loop().time() + HANG
    while (await emulator.astats())["active_streams"]:
        assert asyncio.get_running_loop().time() < deadline, "the stream stayed open"
        await asyncio.sleep(0.02)


async def test_active_streams_drop_when_the_client_disconnects(emulator):
    await emulator.anext(reply=REPLY * 50, interval_ms=50)
    async with httpx.AsyncClient(base_url=emulator.url, timeout=10, trust_env=False) as client:
        body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "x"}], "stream": True}
        async with client.stream("POST", COMPLETIONS, json=body) as response:
            parts = response.aiter_bytes()
            assert (await anext(parts)).startswith(b"data: ")
            assert (await emulator.astats())["active_streams"] == 1
            await parts.aclose()
    await until_no_active_streams(emulator)


# --- the official openai client -----------------------------------------------------------


def openai_client(emulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=emulator.url + "/v1",
        api_key="x",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
    )


async def test_official_client_streams_a_reply_and_lists_models(emulator):
    await emulator.anext(reply=REPLY, chunk_chars=3)
    async with openai_client(emulator) as client:
        models = [model.id async for model in client.models.list()]
        assert models == list(EMULATOR_MODELS)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            stream=True,
        )
        pieces, finish = [], None
        async for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == REPLY
    assert finish == "stop"
    assert (await emulator.astats())["last_prompts"] == ["System: Be brief.\nUser: Hi\nAssistant:"]


async def test_official_client_without_stream_and_its_errors(emulator):
    async with openai_client(emulator) as client:
        completion = await client.chat.completions.create(
            model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hi"}]
        )
        assert completion.choices[0].message.content == default_reply("Hi")
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
        await emulator.anext(fault="text_429")
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hi"}])
        await emulator.anext(fault="openai_401")
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hi"}])
