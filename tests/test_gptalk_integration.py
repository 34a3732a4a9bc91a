"""chat/upstream/gptalk.py against the real emulator over loopback (and a real proxy).

Every test that sends traffic runs with both transports (GPTALK_TRANSPORT).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chat.emulator.replies import default_reply
from chat.emulator.stream import rewritten
from chat.upstream.errors import (
    AuthError,
    ProtocolError,
    QuotaExceeded,
    StreamIncomplete,
    UpstreamError,
    UpstreamUnavailable,
)
from chat.upstream.gptalk import ContentReset, GPTalk, aclose_clients, format_prompt
from tests.fixtures.emulator import EmulatorHandle, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Hello"}]
# Model text with the separators that a str-based line splitter would cut at.
REPLY = "Line one\u2028line two\u0085three\r\n— «quotes» ✨😀 and a \"json\" \\ body."
HANG = 20.0  # seconds: the "does not hang" bound, never a performance claim


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request, settings) -> str:
    settings.GPTALK_TRANSPORT = request.param
    return request.param


@pytest.fixture(autouse=True)
async def fresh_clients():
    yield
    await aclose_clients()


async def collect(**kwargs) -> list[str]:
    kwargs.setdefault("messages", MESSAGES)
    generator = GPTalk.create_async_generator(**kwargs)
    return await asyncio.wait_for(_drain(generator), HANG)


async def _drain(generator) -> list[str]:
    return [delta async for delta in generator]


def apply(deltas: list[str]) -> str:
    text = ""
    for delta in deltas:
        text = str(delta) if isinstance(delta, ContentReset) else text + delta
    return text


async def failure(**kwargs) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        await collect(**kwargs)
    return info.value


async def until(condition, what: str) -> None:
    """Wait for an async condition, failing after HANG seconds."""
    deadline = time.monotonic() + HANG
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


# --- a normal reply ------------------------------------------------------------------


async def test_reply_streams_exactly(emulator, transport):
    await emulator.anext(reply=REPLY, chunk_chars=3)
    deltas = await collect()
    assert "".join(deltas) == REPLY
    assert not any(isinstance(d, ContentReset) for d in deltas)
    assert len(deltas) == -(-len(REPLY) // 3)  # one delta per event
    stats = await emulator.astats()
    assert (stats["logins"], stats["texts"], stats["streams"], stats["rejected"]) == (1, 1, 1, 0)


async def test_default_reply_for_a_conversation(emulator, transport):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is GPTalk?"},
    ]
    deltas = await collect(messages=messages, model="gpt-3.5-turbo")
    assert "".join(deltas) == default_reply(format_prompt(messages))


# --- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        ("login_500", UpstreamUnavailable),
        ("login_no_data", AuthError),
        ("text_500", UpstreamUnavailable),
        ("text_429", QuotaExceeded),
        ("stream_cut", StreamIncomplete),
        ("stream_malformed", ProtocolError),
    ],
)
async def test_fault_raises_its_typed_error(emulator, transport, fault, error_type):
    await emulator.anext(fault=fault)
    error = await failure()
    assert type(error) is error_type
    assert error.message and "Bearer" not in error.message
    stats = await emulator.astats()
    assert stats["faults"] == 1 and stats["rejected"] == 0
    await until(lambda: _no_active_streams(emulator), "the stream to close")


async def test_text_without_data_once_logs_in_again_and_succeeds(emulator, transport):
    await emulator.anext(fault="text_no_data")
    await emulator.anext(reply="recovered")
    assert "".join(await collect()) == "recovered"
    assert (await emulator.astats())["logins"] == 2


async def test_text_without_data_twice_is_quota_exceeded(emulator, transport):
    await emulator.anext(fault="text_no_data")
    await emulator.anext(fault="text_no_data")
    error = await failure()
    assert type(error) is QuotaExceeded
    stats = await emulator.astats()
    assert (stats["logins"], stats["texts"], stats["streams"]) == (2, 0, 0)


async def test_stream_rewrite_yields_a_content_reset(emulator, transport):
    reply = "The first version of the answer, long enough to be rewritten."
    await emulator.anext(reply=reply, chunk_chars=5, fault="stream_rewrite")
    deltas = await collect()
    resets = [d for d in deltas if isinstance(d, ContentReset)]
    assert len(resets) == 1
    assert apply(deltas) == rewritten(reply)


async def test_stalled_stream_times_out(emulator, transport, settings):
    settings.GPTALK_READ_TIMEOUT = 0.3
    await emulator.anext(reply="a stalled answer", fault="stream_stall")
    received: list[str] = []

    async def consume():
        async for delta in GPTalk.create_async_generator(messages=MESSAGES):
            received.append(delta)

    with pytest.raises(UpstreamUnavailable) as info:
        await asyncio.wait_for(consume(), HANG)
    assert type(info.value) is UpstreamUnavailable
    assert info.value.message == "The GPTalk service did not answer within 0.3 s."
    assert received  # the events before the stall arrived
    await until(lambda: _no_active_streams(emulator), "the stalled stream to close")


async def _no_active_streams(emulator) -> bool:
    return (await emulator.astats())["active_streams"] == 0


# --- token rotation ---------------------------------------------------------------------


async def test_sequential_calls_rotate_tokens(emulator, transport):
    for _ in range(25):
        await emulator.anext(reply="short")
    for _ in range(25):
        assert await collect() == ["short"]
    stats = await emulator.astats()
    assert (stats["logins"], stats["texts"], stats["rejected"]) == (5, 25, 0)


@pytest.mark.parametrize("calls", [25, 50])
async def test_concurrent_calls_never_use_a_token_six_times(emulator, transport, calls):
    results = await asyncio.gather(*(collect() for _ in range(calls)))
    assert len({"".join(r) for r in results}) == 1
    stats = await emulator.astats()
    assert (stats["logins"], stats["texts"], stats["rejected"]) == (calls // 5, calls, 0)


async def test_expired_token_is_renewed_before_use(emulator_factory, transport, settings):
    settings.GPTALK_URL = emulator_factory(token_ttl=1, interval_ms=0, chunk_chars=50).url
    await collect()
    expires_at = GPTalk._auth["expires_at"]
    await until(lambda: _past(expires_at), "the token to expire")
    await collect()
    stats = await EmulatorHandle(settings.GPTALK_URL).astats()
    assert (stats["logins"], stats["rejected"]) == (2, 0)


async def test_token_the_service_expired_is_replaced_and_retried(
    emulator_factory, transport, settings
):
    handle = emulator_factory(token_ttl=1, interval_ms=0, chunk_chars=50)
    settings.GPTALK_URL = handle.url
    await collect()
    real_expiry = GPTalk._auth["expires_at"]
    GPTalk._auth["expires_at"] = real_expiry + 3600  # the client believes it still valid
    await until(lambda: _past(real_expiry), "the token to expire")
    assert await collect()
    stats = await handle.astats()
    assert (stats["logins"], stats["rejected"], stats["streams"]) == (2, 1, 2)  # one 401


async def test_expires_at_in_the_past_logs_in_again(emulator, transport):
    await collect()
    GPTalk._auth["expires_at"] = int(time.time()) - 10
    await collect()
    assert (await emulator.astats())["logins"] == 2


async def _past(timestamp: float) -> bool:
    return time.time() > timestamp


# --- cancellation ------------------------------------------------------------------------


async def test_closing_the_generator_closes_the_stream(emulator, transport):
    await emulator.anext(reply="x" * 400, chunk_chars=1, interval_ms=50)
    generator = GPTalk.create_async_generator(messages=MESSAGES)
    assert await asyncio.wait_for(anext(generator), HANG) == "x"
    assert (await emulator.astats())["active_streams"] == 1
    await generator.aclose()
    await until(lambda: _no_active_streams(emulator), "the stream to close")


async def test_cancelling_the_consumer_closes_the_stream(emulator, transport):
    await emulator.anext(reply="y" * 400, chunk_chars=1, interval_ms=50)
    first = asyncio.Event()

    async def consume():
        async for _delta in GPTalk.create_async_generator(messages=MESSAGES):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), HANG)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: _no_active_streams(emulator), "the stream to close")


# --- a real HTTP proxy -------------------------------------------------------------------


@dataclass
class Proxy:
    url: str
    log: Path


@pytest.fixture(scope="module")
def http_proxy(tmp_path_factory) -> Iterator[Proxy]:
    """proxy.py on a free loopback port, its access log in a file."""
    directory = tmp_path_factory.mktemp("proxy")
    port_file, log = directory / "port", directory / "proxy.log"
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
               "--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1",
               "--log-file", str(log), "--log-level", "INFO"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _wait_for_port(port_file, process)
        yield Proxy(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_port(port_file: Path, process: subprocess.Popen) -> int:
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        assert process.poll() is None, "proxy.py exited at start"
        text = port_file.read_text().strip() if port_file.exists() else ""
        if text.isdigit():
            try:
                socket.create_connection(("127.0.0.1", int(text)), timeout=1).close()
                return int(text)
            except OSError:
                pass
        try:
            process.wait(timeout=0.05)  # the poll interval, noticing an early exit
        except subprocess.TimeoutExpired:
            continue
    raise AssertionError("proxy.py did not start")


async def test_calls_go_through_the_proxy(emulator, transport, http_proxy):
    await emulator.anext(reply="via the proxy")
    assert "".join(await collect(proxy=http_proxy.url)) == "via the proxy"
    # proxy.py writes its access log line when a connection closes.
    await aclose_clients()
    await until(
        lambda: _logged(http_proxy.log, "/api/chatgpt/user/login"), "proxy.py's access log"
    )


async def _logged(log: Path, text: str) -> bool:
    # A small local log file: reading it inline is cheaper than a thread hop.
    return log.exists() and text in log.read_text()  # noqa: ASYNC240


async def test_a_dead_proxy_fails_every_step(emulator, transport, settings):
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    # Login through the dead proxy (from the GPTALK_PROXY setting).
    settings.GPTALK_PROXY = dead_proxy
    error = await failure()
    assert type(error) is UpstreamUnavailable
    assert (await emulator.astats())["logins"] == 0
    # Logged in directly, the text request through the dead proxy fails too.
    settings.GPTALK_PROXY = None
    await collect()
    error = await failure(proxy=dead_proxy)
    assert type(error) is UpstreamUnavailable
    stats = await emulator.astats()
    assert (stats["logins"], stats["texts"]) == (1, 1)


# --- the documented examples, as written ---------------------------------------------------

EXAMPLE_1 = """
import asyncio
from chat.upstream.gptalk import GPTalk

async def main():
    messages = [
        {'role': 'user', 'content': 'Привет, как дела?'},
        {'role': 'assistant', 'content': 'Привет! У меня все хорошо, спасибо за вопрос.'},
    ]
    async for response in GPTalk.create_async_generator(messages=messages):
        print(response)

asyncio.run(main())
"""

EXAMPLE_2 = """
from chat.upstream.gptalk import GPTalk

async def main():
    messages = [{"role": "user", "content": "Напиши короткий стих про осень."}]
    async for message in GPTalk.create_async_generator(model="gpt-3.5-turbo", messages=messages):
        print(message, end="")

if __name__ == "__main__":
    import asyncio
    asyncio.run(main())
"""


@pytest.mark.parametrize("script_transport", ["aiohttp", "httpx"])
def test_documented_examples_run_as_written(emulator, script_transport, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPTALK_", "DJANGO_"))}
    env |= {"GPTALK_URL": emulator.url, "PYTHONPATH": str(REPO_ROOT), "PYTHONIOENCODING": "utf-8"}
    env["GPTALK_TRANSPORT"] = script_transport
    outputs = []
    for number, source in enumerate([EXAMPLE_1, EXAMPLE_2], start=1):
        script = tmp_path / f"example_{number}.py"
        script.write_text(source, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-W", "error::ResourceWarning", str(script)],
            env=env, capture_output=True, timeout=HANG, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert done.stderr == b""  # no warnings, no unclosed sessions
        outputs.append(done.stdout.decode("utf-8"))

    # The session emulator sends 8 characters per event: one delta each.
    first = default_reply(format_prompt([
        {"role": "user", "content": "Привет, как дела?"},
        {"role": "assistant", "content": "Привет! У меня все хорошо, спасибо за вопрос."},
    ]))  # fmt: skip
    assert outputs[0] == "".join(first[i : i + 8] + "\n" for i in range(0, len(first), 8))
    second = default_reply("Напиши короткий стих про осень.")
    assert outputs[1] == second
    assert emulator.stats()["logins"] == 2  # one per process
