"""Unit tests of chat/upstream/gptalk.py with httpx.MockTransport.

The product is tested against the real emulator in test_gptalk_integration.py;
these cover what the emulator cannot produce (exact bytes of requests, odd
bodies) and the token bookkeeping. Its typed errors are tested in
test_gptalk_errors.py, the shared HTTP side in test_upstream_http.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.upstream import http
from chat.upstream.errors import (
    AuthError,
    QuotaExceeded,
    UpstreamError,
)
from chat.upstream.gate import StartGate
from chat.upstream.gptalk import (
    USER_AGENT,
    ContentReset,
    GPTalk,
    format_prompt,
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


class SlowLogins(FakeGPTalk):
    """Logins that take a while, counting how many are under way at once."""

    def __init__(self, *, fail_first: bool = False) -> None:
        super().__init__()
        self.in_flight = self.most_in_flight = 0
        self.fail_first = fail_first

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/login"):
            return await super().handle(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.02)
        self.in_flight -= 1
        if self.fail_first:
            self.fail_first = False
            self.requests.append(request)
            return httpx.Response(500)
        return await super().handle(request)


async def test_calls_that_start_together_log_in_side_by_side():
    """Fifty answers that start at once wait for one login's round trip, not
    for ten logins in a row; still never a sixth use of a token. (The start
    gate, tests/test_start_gate.py, is opened wide: all fifty ask at once.)"""
    http._loop_state().start_gate = StartGate(50, hold=60.0)
    fake = SlowLogins()
    results = await asyncio.gather(*(collect(fake) for _ in range(50)))
    assert all(r == ["Hel", "lo"] for r in results)
    assert fake.logins == 10 and fake.most_in_flight == 10 and fake.sixth_uses == 0


async def test_a_failed_login_fails_only_the_call_that_started_it():
    fake = SlowLogins(fail_first=True)
    outcomes = await asyncio.gather(*(collect(fake) for _ in range(5)), return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert len(failed) == 1 and isinstance(failed[0], UpstreamError)
    assert [o for o in outcomes if not isinstance(o, Exception)] == [["Hel", "lo"]] * 4
    assert fake.sixth_uses == 0


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



async def test_content_reset_reaches_the_caller():
    deltas = await collect(FakeGPTalk(events("Hello", "Help", "Help!")))
    assert deltas == ["Hello", ContentReset("Help"), "!"]
    assert isinstance(deltas[1], ContentReset)

