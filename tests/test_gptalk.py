"""Unit tests of chat/upstream/gptalk.py with httpx.MockTransport.

The product is tested against the real emulator in test_gptalk_integration.py;
these cover what the emulator cannot produce (exact bytes of requests, odd
bodies, transport errors at chosen moments) and the token bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.upstream import http as upstream_http
from chat.upstream.errors import (
    AuthError,
    ProtocolError,
    QuotaExceeded,
    StreamIncomplete,
    UpstreamError,
    UpstreamUnavailable,
)
from chat.upstream.gptalk import (
    USER_AGENT,
    ContentReset,
    GPTalk,
    aclose_clients,
    format_prompt,
)

BASE = "http://gptalk.test"
LOGIN_TOKEN = "LOGIN-SECRET-0123456789"
STREAM_TOKEN = "STREAM-SECRET-9876543210"
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(autouse=True)
async def fresh_state():
    GPTalk._auth = None
    GPTalk.used_times = 0
    yield
    GPTalk._auth = None
    GPTalk.used_times = 0
    await aclose_clients()


def events(*contents: str, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps({"content": c}).encode() + b"\n" for c in contents)
    return body + (b"data: [DONE]\n" if done else b"")


class FakeGPTalk:
    """An in-memory GPTalk API: 5 uses per login token, one-use stream tokens.

    `login`, `text` and `stream` may be replaced by a callable returning a
    response to script an edge case; `requests` records every request.
    """

    def __init__(self, body: bytes = events("Hel", "Hello"), *, ttl: int = 3600) -> None:
        self.body = body
        self.ttl = ttl
        self.requests: list[httpx.Request] = []
        self.uses: dict[str, int] = {}
        self.streams: set[str] = set()
        self.logins = 0
        self.sixth_uses = 0
        self.login: Callable[[httpx.Request], httpx.Response] | None = None
        self.text: Callable[[httpx.Request], httpx.Response] | None = None
        self.stream: Callable[[httpx.Request], httpx.Response] | None = None

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/chatgpt/user/login":
            return self.login(request) if self.login else self._login()
        if path == "/api/chatgpt/chatapi/text":
            return self.text(request) if self.text else self._text(request)
        if path == "/api/chatgpt/chatapi/stream":
            return self.stream(request) if self.stream else self._stream(request)
        return httpx.Response(404)

    def _login(self) -> httpx.Response:
        self.logins += 1
        token = f"{LOGIN_TOKEN}-{self.logins}"
        self.uses[token] = 0
        return httpx.Response(
            200, json={"data": {"token": token, "expires_at": int(time.time()) + self.ttl}}
        )

    def _text(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.uses:
            return httpx.Response(401, json={"error": "unknown token"})
        if self.uses[token] >= 5:
            self.sixth_uses += 1
            return httpx.Response(200, json={"code": 0})
        self.uses[token] += 1
        stream_token = f"{STREAM_TOKEN}-{len(self.streams)}"
        self.streams.add(stream_token)
        return httpx.Response(200, json={"data": {"token": stream_token}})

    def _stream(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("token") not in self.streams:
            return httpx.Response(401)
        self.streams.discard(request.url.params["token"])
        return httpx.Response(200, content=self.body)

    def paths(self) -> list[str]:
        return [r.url.path.rsplit("/", 1)[-1] for r in self.requests]


def generate(fake: FakeGPTalk, **kwargs) -> AsyncIterator[str]:
    kwargs.setdefault("messages", MESSAGES)
    return GPTalk.create_async_generator(client=fake.client(), base_url=BASE, **kwargs)


async def collect(fake: FakeGPTalk, **kwargs) -> list[str]:
    return [delta async for delta in generate(fake, **kwargs)]


async def failure(fake: FakeGPTalk, **kwargs) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        await collect(fake, **kwargs)
    error = info.value
    assert error.message == str(error) and error.message
    assert LOGIN_TOKEN not in error.message and STREAM_TOKEN not in error.message
    return error


# --- format_prompt --------------------------------------------------------------


def test_format_prompt_single_message_is_its_content():
    assert format_prompt([{"role": "user", "content": "Hello"}]) == "Hello"
    assert format_prompt([{"role": "system", "content": "Be brief"}]) == "Be brief"


def test_format_prompt_many_messages():
    messages = [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "USER", "content": "Line one\nline two"},
    ]
    assert format_prompt(messages) == (
        "System: Be brief\nUser: Hi\nAssistant: Hello!\nUser: Line one\nline two\nAssistant:"
    )


roles = st.sampled_from(["system", "user", "assistant", "User", "ASSISTANT"])
message = st.fixed_dictionaries({"role": roles, "content": st.text(max_size=20)})


@given(st.lists(message, min_size=2, max_size=6))
def test_format_prompt_property(messages):
    prompt = format_prompt(messages)
    assert prompt.endswith("\nAssistant:")
    expected = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    assert prompt == "\n".join(expected) + "\nAssistant:"
    assert all(line.split(":")[0] in {"System", "User", "Assistant"} for line in expected)


# --- class attributes and the documented calls ------------------------------------


def test_class_attributes():
    assert GPTalk.url == "https://gptalk.net"
    assert GPTalk.working is True
    assert GPTalk.supports_gpt_35_turbo is True
    assert GPTalk._auth is None and GPTalk.used_times == 0


async def test_documented_calls_and_default_model():
    fake = FakeGPTalk()
    assert await collect(fake) == ["Hel", "lo"]  # messages only: no model
    assert await collect(fake, model="gpt-3.5-turbo") == ["Hel", "lo"]
    assert await collect(fake, model="") == ["Hel", "lo"]
    assert await collect(fake, model="gpt-4") == ["Hel", "lo"]
    models = [json.loads(r.content)["model"] for r in fake.requests if r.url.path.endswith("text")]
    assert models == ["gpt-3.5-turbo", "gpt-3.5-turbo", "gpt-3.5-turbo", "gpt-4"]


async def test_empty_messages_are_refused():
    with pytest.raises(ValueError):
        await collect(FakeGPTalk(), messages=[])


# --- the exact requests ------------------------------------------------------------


async def test_requests_follow_the_protocol():
    fake = FakeGPTalk()
    before = int(time.time())
    messages = [{"role": "user", "content": "héllo"}, {"role": "assistant", "content": "x"}]
    await collect(fake, messages=messages)
    login, text, stream = fake.requests
    assert (login.method, text.method, stream.method) == ("POST", "POST", "GET")

    timestamp = login.headers["x-auth-timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    for request in fake.requests:
        h = request.headers
        assert h["x-auth-timestamp"] == timestamp  # one timestamp per call
        assert h["authority"] == "gptalk.net"
        assert h["origin"] == "https://gptalk.net"
        assert h["accept"] == "*/*"
        assert h["accept-language"].startswith("de-DE,de;q=0.9,")
        assert h["content-type"] == "application/json"
        assert h["sec-ch-ua"] == '"Google Chrome";v="117", "Not;A=Brand";v="8", "Chromium";v="117"'
        assert h["sec-ch-ua-mobile"] == "?0" and h["sec-ch-ua-platform"] == '"Linux"'
        assert (h["sec-fetch-dest"], h["sec-fetch-mode"], h["sec-fetch-site"]) == (
            "empty",
            "cors",
            "same-origin",
        )
        assert h["user-agent"] == USER_AGENT and "Chrome/117" in USER_AGENT
        assert (h["x-auth-appid"], h["x-auth-openid"], h["x-auth-platform"]) == ("2229", "", "")
    assert "authorization" not in login.headers and "authorization" not in stream.headers
    assert text.headers["authorization"] == f"Bearer {LOGIN_TOKEN}-1"

    login_body = json.loads(login.content)
    assert list(login_body) == ["fingerprint", "platform"]
    assert re.fullmatch(r"[0-9a-f]{32}", login_body["fingerprint"])
    assert login_body["platform"] == "fingerprint"

    text_body = json.loads(text.content)
    assert list(text_body) == [
        "content", "accept", "from", "model", "is_mobile", "user_agent",
        "is_open_ctx", "prompt", "roid", "temperature", "ctx_msg_count", "created_at",
    ]  # fmt: skip
    assert text_body == {
        "content": "User: héllo\nAssistant: x\nAssistant:",
        "accept": "stream",
        "from": 1,
        "model": "gpt-3.5-turbo",
        "is_mobile": 0,
        "user_agent": USER_AGENT,
        "is_open_ctx": 0,
        "prompt": "",
        "roid": 111,
        "temperature": 0,
        "ctx_msg_count": 3,
        "created_at": int(timestamp),
    }
    assert stream.url.path == "/api/chatgpt/chatapi/stream"
    assert stream.url.params["token"] == f"{STREAM_TOKEN}-0"


async def test_fingerprint_is_random_per_login():
    fake = FakeGPTalk()
    for _ in range(3):
        GPTalk._auth = None
        await collect(fake)
    logins = [r for r in fake.requests if r.url.path.endswith("login")]
    fingerprints = {json.loads(r.content)["fingerprint"] for r in logins}
    assert len(fingerprints) == 3


async def test_a_lone_surrogate_in_a_message_can_be_sent():
    fake = FakeGPTalk()
    await collect(fake, messages=[{"role": "user", "content": "a\ud800b"}])
    assert json.loads(fake.requests[1].content)["content"] == "a\ud800b"


# --- token lifecycle ---------------------------------------------------------------


async def test_token_is_used_five_times_then_renewed():
    fake = FakeGPTalk()
    for _ in range(11):
        await collect(fake)
    assert fake.logins == 3 and fake.sixth_uses == 0
    assert GPTalk.used_times == 1


async def test_fifty_concurrent_calls_log_in_ten_times():
    fake = FakeGPTalk()
    results = await asyncio.gather(*(collect(fake) for _ in range(50)))
    assert all(r == ["Hel", "lo"] for r in results)
    assert fake.logins == 10 and fake.sixth_uses == 0
    assert max(fake.uses.values()) == 5


async def test_used_times_past_five_counts_as_used_up():
    fake = FakeGPTalk()
    await collect(fake)
    GPTalk.used_times = 7  # the original's "== 5" would never log in again
    await collect(fake)
    assert fake.logins == 2


async def test_expired_token_logs_in_again():
    fake = FakeGPTalk()
    await collect(fake)
    GPTalk._auth["expires_at"] = int(time.time()) - 1
    await collect(fake)
    assert fake.logins == 2 and fake.sixth_uses == 0


async def test_refused_token_logs_in_again_and_retries_once():
    fake = FakeGPTalk()
    await collect(fake)
    fake.uses.clear()  # the service forgot the token: 401
    assert await collect(fake) == ["Hel", "lo"]
    assert fake.paths() == ["login", "text", "stream", "text", "login", "text", "stream"]


async def test_no_data_logs_in_again_and_retries_once():
    fake = FakeGPTalk()
    await collect(fake)
    fake.uses[f"{LOGIN_TOKEN}-1"] = 5  # used up elsewhere
    assert await collect(fake) == ["Hel", "lo"]
    assert fake.logins == 2


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_twice_is_an_auth_error(status):
    fake = FakeGPTalk()
    fake.text = lambda request: httpx.Response(status)
    error = await failure(fake)
    assert type(error) is AuthError and error.status_code == status
    assert fake.paths() == ["login", "text", "login", "text"]


@pytest.mark.parametrize(
    "body", [{"code": 0}, {"data": None}, {"data": {}}, {"data": {"token": ""}}]
)
async def test_no_data_twice_is_quota_exceeded(body):
    fake = FakeGPTalk()
    fake.text = lambda request: httpx.Response(200, json=body)
    error = await failure(fake)
    assert type(error) is QuotaExceeded
    assert fake.paths() == ["login", "text", "login", "text"]


async def test_a_failed_login_leaves_no_state():
    fake = FakeGPTalk()
    fake.login = lambda request: httpx.Response(500)
    await failure(fake)
    assert GPTalk._auth is None
    fake.login = None
    assert await collect(fake) == ["Hel", "lo"]


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


# --- cancellation -------------------------------------------------------------------


class EndlessBody(httpx.AsyncByteStream):
    """A stream body that never ends and records when httpx closes it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'data: {"content": "a"}\n'
        self.started.set()
        while True:
            await asyncio.sleep(0.01)
            yield b": ping\n"

    async def aclose(self) -> None:
        self.closed.set()


async def test_closing_the_generator_closes_the_stream():
    body = EndlessBody()
    fake = FakeGPTalk()
    fake.stream = lambda request: httpx.Response(200, stream=body)
    generator = generate(fake)
    assert await anext(generator) == "a"
    assert not body.closed.is_set()
    await generator.aclose()
    assert body.closed.is_set()


async def test_cancelling_the_consumer_closes_the_stream():
    body = EndlessBody()
    fake = FakeGPTalk()
    fake.stream = lambda request: httpx.Response(200, stream=body)

    async def consume():
        async for _delta in generate(fake):
            pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(body.started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed.is_set()


# --- configuration and the shared clients ---------------------------------------------


def test_config_reads_django_settings(settings):
    settings.GPTALK_URL = "http://example.test:9/"
    settings.GPTALK_PROXY = "http://proxy.test:3128"
    settings.GPTALK_READ_TIMEOUT = 2.5
    settings.GPTALK_CONNECT_TIMEOUT = 1.5
    settings.GPTALK_TRANSPORT = "httpx"
    config = upstream_http.config_load()
    assert config.base_url == "http://example.test:9"
    assert config.proxy == "http://proxy.test:3128"
    assert config.transport == "httpx"
    assert config.timeout == httpx.Timeout(connect=1.5, read=2.5, write=1.5, pool=1.5)
    # Arguments win.
    config = upstream_http.config_load(
        base_url="http://b.test", proxy="http://p.test", transport="aiohttp"
    )
    assert (config.base_url, config.proxy, config.transport) == (
        "http://b.test",
        "http://p.test",
        "aiohttp",
    )


def test_config_rejects_bad_values(settings):
    settings.GPTALK_TRANSPORT = "curl"
    with pytest.raises(ValueError):
        upstream_http.config_load()
    settings.GPTALK_TRANSPORT = "aiohttp"
    settings.GPTALK_READ_TIMEOUT = "soon"
    with pytest.raises(ValueError):
        upstream_http.config_load()


def test_config_without_django_reads_the_environment():
    script = (
        "from chat.upstream.http import config_load\n"
        "import django.conf\n"
        "c = config_load()\n"
        "assert not django.conf.settings.configured\n"
        "print(c.base_url, c.proxy, c.transport, c.connect_timeout, c.read_timeout)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPTALK_", "DJANGO_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    env["GPTALK_READ_TIMEOUT"], env["GPTALK_CONNECT_TIMEOUT"] = "7", "3"

    def run(**extra: str) -> list[str]:
        command = [sys.executable, "-c", script]
        out = subprocess.run(command, env=env | extra, capture_output=True, text=True, check=True)
        return out.stdout.split()

    assert run() == ["http://127.0.0.1:8765", "None", "aiohttp", "3.0", "7.0"]
    assert run(
        GPTALK_URL="http://h.test:1/", GPTALK_PROXY="http://p.test:2", GPTALK_TRANSPORT="httpx"
    ) == ["http://h.test:1", "http://p.test:2", "httpx", "3.0", "7.0"]


async def test_one_shared_client_per_loop_proxy_and_transport():
    a = upstream_http.client_get(proxy=None, transport="aiohttp")
    assert upstream_http.client_get(proxy=None, transport="aiohttp") is a
    b = upstream_http.client_get(proxy="http://127.0.0.1:9", transport="aiohttp")
    c = upstream_http.client_get(proxy=None, transport="httpx")
    assert len({id(a), id(b), id(c)}) == 3
    await aclose_clients()
    assert a.is_closed and b.is_closed and c.is_closed
    assert upstream_http.client_get(proxy=None, transport="aiohttp") is not a


def test_clients_are_not_shared_between_loops():
    async def get():
        client = upstream_http.client_get(proxy=None, transport="httpx")
        await aclose_clients()
        return client

    assert asyncio.run(get()) is not asyncio.run(get())


def test_clients_are_closed_when_their_loop_shuts_down():
    async def get():
        return upstream_http.client_get(proxy=None, transport="aiohttp")

    client = asyncio.run(get())  # no aclose_clients(): asyncio.run's shutdown closes it
    assert client.is_closed


def test_aiohttp_client_proxies_through_its_own_transport():
    from httpx_aiohttp import AiohttpTransport

    client = upstream_http.client_create(proxy="http://127.0.0.1:3128", transport="aiohttp")
    assert isinstance(client._transport, AiohttpTransport)
    assert str(client._transport.proxy.url) == "http://127.0.0.1:3128"
    assert not client._mounts  # nothing routes around the aiohttp transport


async def test_content_reset_reaches_the_caller():
    deltas = await collect(FakeGPTalk(events("Hello", "Help", "Help!")))
    assert deltas == ["Hello", ContentReset("Help"), "!"]
    assert isinstance(deltas[1], ContentReset)
