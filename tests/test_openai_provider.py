"""chat/providers/openai.py and chat/upstream/openai.py: against the real emulator over loopback (both transports),
and httpx.MockTransport only for answers the emulator cannot give."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from chat.emulator.replies import default_reply
from chat.providers.openai import OpenAIProvider
from chat.upstream.errors import (
    AuthError,
    ModelNotFound,
    ProtocolError,
    QuotaExceeded,
    StreamIncomplete,
    UpstreamError,
    UpstreamUnavailable,
)
from chat.upstream.http import aclose_clients
from tests.fixtures.emulator import free_port

# The shared cases and fixtures of both upstream clients' integration tests.
from tests.test_gptalk_integration import (  # noqa: F401 - fixtures by name
    HANG,
    MESSAGES,
    REPLY,
    _logged,
    fresh_clients,
    http_proxy,
    transport,
)


def provider_at(url: str, **kwargs) -> OpenAIProvider:
    kwargs.setdefault("name", "Emu")
    return OpenAIProvider(base_url=url, **kwargs)


async def collect(provider: OpenAIProvider, *, model: str | None = "gpt-3.5-turbo", **kwargs) -> list[str]:
    kwargs.setdefault("messages", MESSAGES)
    stream = provider.create_async_generator(model=model, **kwargs)
    return await asyncio.wait_for(_drain(stream), HANG)


async def _drain(stream) -> list[str]:
    return [delta async for delta in stream]


async def failure(provider: OpenAIProvider, **kwargs) -> tuple[UpstreamError, list[str]]:
    """The error of an answer, and the deltas received before it."""
    received: list[str] = []

    async def run() -> None:
        async for delta in provider.create_async_generator(
            model=kwargs.pop("model", "gpt-3.5-turbo"), messages=kwargs.pop("messages", MESSAGES), **kwargs
        ):
            received.append(delta)

    with pytest.raises(UpstreamError) as info:
        await asyncio.wait_for(run(), HANG)
    return info.value, received


# --- over loopback, against the emulator ----------------------------------------------------


async def test_reply_streams_exactly(emulator, transport):
    await emulator.anext(reply=REPLY, chunk_chars=3)
    deltas = await collect(provider_at(emulator.url + "/v1"))
    assert "".join(deltas) == REPLY
    assert len(deltas) == -(-len(REPLY) // 3)  # one delta per chunk, the empty role chunk skipped
    stats = await emulator.astats()
    assert (stats["texts"], stats["streams"], stats["logins"]) == (1, 1, 0)


async def test_system_prompt_goes_as_a_system_message(emulator, transport):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is GPTalk?"},
    ]
    deltas = await collect(provider_at(emulator.url + "/v1/"), messages=messages, model="gpt-4o-mini")
    prompt = "System: Be brief.\nUser: What is GPTalk?\nAssistant:"  # the emulator's record of the roles
    assert (await emulator.astats())["last_prompts"] == [prompt]
    assert "".join(deltas) == default_reply(prompt)


async def test_default_model_and_first_listed_model(emulator, transport):
    provider = provider_at(emulator.url + "/v1", default_model="gpt-4o-mini")
    assert "".join(await collect(provider, model=None)) == default_reply("Hello")
    # No default: the first model the server lists.
    assert "".join(await collect(provider_at(emulator.url + "/v1"), model="")) == default_reply("Hello")


async def test_models_are_listed(emulator, transport):
    assert await provider_at(emulator.url + "/v1").list_models() == ["gpt-3.5-turbo", "gpt-4o-mini"]
    assert await provider_at(emulator.url + "/v1").check(timeout=5) == ["gpt-3.5-turbo", "gpt-4o-mini"]


async def test_closing_early_closes_the_stream(emulator, transport):
    await emulator.anext(reply=REPLY * 50, interval_ms=50)
    stream = provider_at(emulator.url + "/v1").create_async_generator(model="gpt-3.5-turbo", messages=MESSAGES)
    assert await anext(stream)
    assert (await emulator.astats())["active_streams"] == 1
    await stream.aclose()
    deadline = asyncio.get_running_loop().time() + HANG
    while (await emulator.astats())["active_streams"]:
        assert asyncio.get_running_loop().time() < deadline, "the upstream stream stayed open"
        await asyncio.sleep(0.02)


# --- errors over loopback -----------------------------------------------------------------


async def test_401_is_auth_error(emulator, transport):
    await emulator.anext(fault="openai_401")
    error, received = await failure(provider_at(emulator.url + "/v1", api_key="sk-secret-123"))
    assert type(error) is AuthError and error.status_code == 401
    assert "sk-secret-123" not in error.message and "Emu" in error.message
    assert received == []


async def test_unknown_model_is_model_not_found(emulator, transport):
    error, _ = await failure(provider_at(emulator.url + "/v1"), model="llama-9000")
    assert type(error) is ModelNotFound and isinstance(error, ProtocolError)
    assert "llama-9000" in error.message
    await emulator.anext(fault="openai_404")
    error, _ = await failure(provider_at(emulator.url + "/v1"))
    assert type(error) is ModelNotFound


async def test_429_is_quota_exceeded(emulator, transport):
    await emulator.anext(fault="text_429")
    error, _ = await failure(provider_at(emulator.url + "/v1"))
    assert type(error) is QuotaExceeded and error.status_code == 429


async def test_500_is_upstream_unavailable(emulator, transport):
    await emulator.anext(fault="text_500")
    error, _ = await failure(provider_at(emulator.url + "/v1"))
    assert type(error) is UpstreamUnavailable and error.status_code == 500


async def test_cut_stream_is_incomplete_with_the_partial_text(emulator, transport):
    await emulator.anext(reply=REPLY, chunk_chars=4, fault="stream_cut")
    error, received = await failure(provider_at(emulator.url + "/v1"))
    assert type(error) is StreamIncomplete
    assert received and REPLY.startswith("".join(received)) and "".join(received) != REPLY
    assert "Emu" in error.message


async def test_malformed_event_is_protocol_error(emulator, transport):
    await emulator.anext(reply=REPLY, fault="stream_malformed")
    error, received = await failure(provider_at(emulator.url + "/v1"))
    assert type(error) is ProtocolError
    assert received


async def test_stall_fails_after_the_read_timeout(emulator, transport):
    await emulator.anext(reply=REPLY, fault="stream_stall")
    error, received = await failure(provider_at(emulator.url + "/v1", read_timeout=0.5))
    assert type(error) is UpstreamUnavailable
    assert "did not answer within 0.5 s" in error.message and "GPTalk" not in error.message
    assert received


async def test_closed_port_is_upstream_unavailable(transport):
    provider = provider_at(f"http://127.0.0.1:{free_port()}/v1", name="Dead")
    error, _ = await failure(provider)
    assert type(error) is UpstreamUnavailable
    assert error.message == "Could not reach the provider “Dead”. Try again later."
    with pytest.raises(UpstreamUnavailable):
        await provider.list_models(timeout=2)


async def test_base_url_without_v1_says_so(emulator, transport):
    error, _ = await failure(provider_at(emulator.url))
    assert type(error) is ProtocolError and error.status_code == 404
    assert "/v1" in error.message


# --- the proxy setting, as for GPTalk -----------------------------------------------------


async def test_calls_go_through_the_proxy(emulator, transport, http_proxy):
    await emulator.anext(reply="via the proxy")
    provider = provider_at(emulator.url + "/v1", proxy=http_proxy.url)
    assert "".join(await collect(provider)) == "via the proxy"
    await aclose_clients()  # proxy.py writes its access log line when a connection closes
    deadline = asyncio.get_running_loop().time() + HANG
    while not await _logged(http_proxy.log, "/v1/chat/completions"):
        assert asyncio.get_running_loop().time() < deadline, "not in proxy.py's access log"
        await asyncio.sleep(0.02)


async def test_a_dead_proxy_from_the_setting(emulator, transport, settings):
    settings.GPTALK_PROXY = f"http://127.0.0.1:{free_port()}"
    error, _ = await failure(provider_at(emulator.url + "/v1"))
    assert type(error) is UpstreamUnavailable
    assert (await emulator.astats())["texts"] == 0


# --- answers the emulator cannot give (httpx.MockTransport) ---------------------------------


def mocked(handler, **kwargs) -> OpenAIProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return OpenAIProvider(name="Mock", base_url="http://upstream.test/v1", client=client, **kwargs)


def sse(*events: bytes, content_type: str = "text/event-stream") -> httpx.Response:
    return httpx.Response(200, content=b"".join(events), headers={"content-type": content_type})


def chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def test_request_body_and_headers():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse(chunk("ok"), b"data: [DONE]\n\n")

    messages = [{"role": "system", "content": "Be brief.", "extra": "dropped"}, {"role": "user", "content": "Hi"}]
    assert await collect(mocked(handler, api_key="sk-1"), model="m1", messages=messages) == ["ok"]
    assert await collect(mocked(handler), model="m1") == ["ok"]
    with_key, without_key = seen
    assert with_key.url == "http://upstream.test/v1/chat/completions"
    assert with_key.headers["authorization"] == "Bearer sk-1"
    assert "authorization" not in without_key.headers
    assert json.loads(with_key.content) == {
        "model": "m1",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_sse_variants_are_read():
    # `data:` without the space, \r\n line ends, comments, event/id fields, a usage-only chunk.
    body = (
        b": keep-alive\r\n\r\n"
        b"event: message\r\nid: 1\r\n"
        b'data:{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}\r\n\r\n'
        + chunk("Hé").replace(b"\n", b"\r\n")
        + b'data: {"choices":[],"usage":{"total_tokens":3}}\n\n'
        + chunk("llo\u2028!")
        + b"data: [DONE]\n\n"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        # One byte at a time: lines and UTF-8 characters cut across chunks.
        return httpx.Response(200, stream=ByteByByte(body), headers={"content-type": "text/event-stream"})

    assert await collect(mocked(handler)) == ["Hé", "llo\u2028!"]


class ByteByByte(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self):
        for i in range(len(self.body)):
            yield self.body[i : i + 1]


async def test_finish_reason_without_done_is_complete_but_nothing_is_incomplete():
    assert await collect(mocked(lambda r: sse(chunk("a"), chunk(finish="stop")))) == ["a"]
    error, received = await failure(mocked(lambda r: sse(chunk("a"), chunk("b"))))
    assert type(error) is StreamIncomplete and received == ["a", "b"]


async def test_error_event_in_the_stream():
    event = b'data: {"error": {"message": "the GPU fell over", "code": 500}}\n\n'
    error, received = await failure(mocked(lambda r: sse(chunk("a"), event)))
    assert type(error) is UpstreamUnavailable and "the GPU fell over" in error.message
    assert received == ["a"]
    event = b'data: {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}\n\n'
    error, _ = await failure(mocked(lambda r: sse(event)))
    assert type(error) is QuotaExceeded


async def test_json_answer_to_a_stream_request_is_accepted():
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}}]}
    response = httpx.Response(200, json=body)
    assert await collect(mocked(lambda r: response)) == ["whole"]


@pytest.mark.parametrize(
    ("response", "kind", "in_message"),
    [
        (httpx.Response(403, json={"error": {"message": "key sk-abc is wrong"}}), AuthError, "HTTP 403"),
        (httpx.Response(404, json={"error": 'model "llama3" not found, try pulling it first'}), ModelNotFound, "m1"),
        (httpx.Response(404, text="404 page not found"), ProtocolError, "/v1"),
        (
            httpx.Response(400, json={"object": "error", "message": "context too long"}),
            ProtocolError,
            "context too long",
        ),
        (httpx.Response(503, text="<html>busy</html>"), UpstreamUnavailable, "HTTP 503"),
        (sse(b'data: {"choices": [{"index": 0}]}\n\n'), ProtocolError, "delta"),
        (sse(b"data: [1, 2]\n\n"), ProtocolError, "JSON object"),
        (httpx.Response(200, json={"choices": []}), ProtocolError, "does not understand"),
    ],
)
async def test_http_answers_map_to_typed_errors(response, kind, in_message):
    error, _ = await failure(mocked(lambda r: response), model="m1")
    assert type(error) is kind
    assert in_message in error.message
    assert "sk-abc" not in error.message


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(200, json={"data": "nope"}), ProtocolError),
        (httpx.Response(200, json={"data": [{"name": "x"}]}), ProtocolError),
        (httpx.Response(200, text="not json"), ProtocolError),
        (httpx.Response(401, json={}), AuthError),
        (httpx.Response(500, json={}), UpstreamUnavailable),
    ],
)
async def test_model_list_errors(response, kind):
    with pytest.raises(UpstreamError) as info:
        await mocked(lambda r: response).list_models()
    assert type(info.value) is kind


def test_a_provider_needs_a_url_and_never_shows_its_key():
    with pytest.raises(ValueError):
        OpenAIProvider(name="x", base_url=" ")
    provider = OpenAIProvider(name="x", base_url="http://h/v1", api_key="sk-hidden")
    assert "sk-hidden" not in repr(provider) and "sk-hidden" not in repr(provider.cache_key)
