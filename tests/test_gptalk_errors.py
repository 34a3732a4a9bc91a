"""The GPTalk client's typed errors (chat/upstream/errors.py, worded for GPTalk):
every HTTP status, malformed body and transport failure at each of the three
steps, with httpx.MockTransport; and never a token in a message or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from chat.upstream.errors import (
    AuthError,
    ProtocolError,
    QuotaExceeded,
    StreamIncomplete,
    UpstreamError,
    UpstreamUnavailable,
)
from tests.fixtures.fake_gptalk import (  # noqa: F401 - fresh_state: an autouse fixture
    LOGIN_TOKEN,
    STREAM_TOKEN,
    FakeGPTalk,
    collect,
    events,
    failure,
    fresh_state,
    generate,
)

# --- typed errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "error_type"),
    [
        (httpx.Response(500), UpstreamUnavailable),
        (httpx.Response(503, text="busy"), UpstreamUnavailable),
        (httpx.Response(429), QuotaExceeded),
        (httpx.Response(401), AuthError),
        (httpx.Response(200, json={"code": 1}), AuthError),
        (httpx.Response(200, json={"data": None}), AuthError),
        (httpx.Response(200, text="<html>"), ProtocolError),
        (httpx.Response(200, json=["data"]), ProtocolError),
        (httpx.Response(200, json={"data": "x"}), ProtocolError),
        (httpx.Response(200, json={"data": {"expires_at": 1}}), ProtocolError),
        (httpx.Response(200, json={"data": {"token": 5, "expires_at": 1}}), ProtocolError),
        (httpx.Response(200, json={"data": {"token": "t", "expires_at": "soon"}}), ProtocolError),
        (httpx.Response(302, headers={"location": "/"}), ProtocolError),
    ],
)
async def test_login_errors(response, error_type):
    fake = FakeGPTalk()
    fake.login = lambda request: response
    error = await failure(fake)
    assert type(error) is error_type


@pytest.mark.parametrize(
    ("response", "error_type"),
    [
        (httpx.Response(500), UpstreamUnavailable),
        (httpx.Response(429), QuotaExceeded),
        (httpx.Response(200, text="not json"), ProtocolError),
        (httpx.Response(200, json={"data": ["token"]}), ProtocolError),
        (httpx.Response(200, json={"data": {"token": 42}}), ProtocolError),
    ],
)
async def test_text_errors(response, error_type):
    fake = FakeGPTalk()
    fake.text = lambda request: response
    error = await failure(fake)
    assert type(error) is error_type
    assert fake.paths() == ["login", "text"]


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        (events("a", done=False), StreamIncomplete),
        (b"", StreamIncomplete),
        (events("a", done=False) + b'data: {"content": "ab"}', StreamIncomplete),
        (b"data: {oops\n", ProtocolError),
        (b'data: {"content": 1}\n', ProtocolError),
    ],
)
async def test_stream_errors(body, error_type):
    error = await failure(FakeGPTalk(body))
    assert type(error) is error_type


@pytest.mark.parametrize(
    ("status", "error_type"), [(500, UpstreamUnavailable), (404, ProtocolError), (401, AuthError)]
)
async def test_stream_status_errors(status, error_type):
    fake = FakeGPTalk()
    fake.stream = lambda request: httpx.Response(status)
    error = await failure(fake)
    assert type(error) is error_type and error.status_code == status


async def raising_body(exc: Exception) -> AsyncIterator[bytes]:
    yield b'data: {"content": "partial"}\n'
    raise exc


@pytest.mark.parametrize(
    ("exc", "error_type", "words"),
    [
        (httpx.ReadTimeout("timed out"), UpstreamUnavailable, "did not answer within 60 s"),
        (httpx.RemoteProtocolError("peer closed"), StreamIncomplete, "cut off"),
        (httpx.ReadError("reset"), StreamIncomplete, "cut off"),
    ],
)
async def test_transport_errors_mid_stream(exc, error_type, words):
    fake = FakeGPTalk()
    fake.stream = lambda request: httpx.Response(200, content=raising_body(exc))
    seen: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for delta in generate(fake):
            seen.append(delta)
    assert seen == ["partial"]
    assert type(info.value) is error_type and words in info.value.message


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (httpx.ConnectError("refused"), "Could not reach the GPTalk service"),
        (httpx.ConnectTimeout("slow"), "Could not connect to the GPTalk service within 10 s"),
        (httpx.ReadTimeout("slow"), "did not answer within 60 s"),
        (httpx.PoolTimeout("full"), "Too many GPTalk requests"),
        (httpx.ProxyError("bad proxy"), "proxy"),
        (httpx.RemoteProtocolError("closed"), "closed the connection"),
    ],
)
async def test_transport_errors_before_the_stream(exc, words, settings):
    settings.GPTALK_READ_TIMEOUT = 60.0
    settings.GPTALK_CONNECT_TIMEOUT = 10.0

    def fail(request):
        raise exc

    fake = FakeGPTalk()
    fake.login = fail
    error = await failure(fake)
    assert type(error) is UpstreamUnavailable and words in error.message


async def test_errors_and_logs_never_show_tokens(caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeGPTalk()
    await collect(fake)
    fake.uses.clear()
    await collect(fake)  # 401, login again, retry
    fake.text = lambda request: httpx.Response(401)
    await failure(fake)
    assert "refused the login token" in caplog.text
    assert LOGIN_TOKEN not in caplog.text and STREAM_TOKEN not in caplog.text

