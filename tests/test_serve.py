"""`manage.py serve`: N daphne processes on one socket, on uvloop, supervised;
SIGTERM ends the answers in flight before the process exits."""

import asyncio
import re
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from tests.fixtures.emulator import REPO_ROOT, free_port
from tests.fixtures.site import Browser, SiteProcess, Socket, manage, site_env, sqlite_url

pytest_plugins = ["tests.fixtures.faults"]

PASSWORD = "a-long-unusual-passphrase-42"
SERVING = re.compile(r"daphne process (\d+) serving, event loop (\S+)")


def serving(site: SiteProcess) -> dict[int, str]:
    """{pid: event loop class} of every daphne process that logged it was serving."""
    return {int(pid): loop for pid, loop in SERVING.findall(site.output())}


def uvloop_loaded(pid: int) -> bool:
    """Whether uvloop's compiled loop is mapped into the process (seen from outside it)."""
    return "/uvloop/loop." in open(f"/proc/{pid}/maps").read()


def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


@pytest.fixture
def sqlite_env(tmp_path, emulator_server):
    env = site_env(database_url=sqlite_url(tmp_path / "serve.sqlite3"), gptalk_url=emulator_server.url)
    manage("migrate", "--noinput", env=env)
    return env


def test_more_than_one_process_without_redis_is_refused_with_the_reason(sqlite_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", str(free_port()), "--processes", "2"],
        cwd=REPO_ROOT, env=sqlite_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "--processes 2 needs REDIS_URL" in result.stderr


@pytest.mark.multiprocess
def test_processes_share_one_socket_on_uvloop_and_stop_together(sqlite_env, private_redis):
    site = SiteProcess(env={**sqlite_env, "REDIS_URL": private_redis.url}, args=("--processes", "2"))
    try:
        loops = wait_for(lambda: len(serving(site)) == 2 and serving(site), timeout=30,
                         what="two daphne processes did not start")
        assert set(loops.values()) == {"uvloop.Loop"}, "the running loop of each process"
        assert set(loops) == set(site.children())
        assert all(uvloop_loaded(pid) for pid in loops)
        # Both accept on the one port the supervisor bound.
        with httpx.Client(trust_env=False, timeout=10) as client:
            for _ in range(20):
                assert client.get(site.url + "/accounts/login/", headers={"Connection": "close"}).status_code == 200
        # A daphne process that crashes is replaced; the port keeps answering.
        crashed = next(iter(loops))
        subprocess.run(["kill", "-KILL", str(crashed)], check=True)
        replaced = wait_for(lambda: len(set(serving(site)) - set(loops)) == 1 and serving(site),
                            timeout=30, what="the crashed process was not replaced")
        assert crashed not in site.children() and len(site.children()) == 2
        assert set(site.children()) <= set(replaced)
        children = site.children()
        site.process.send_signal(signal.SIGTERM)
        assert site.process.wait(timeout=20) == 0
        assert not any(_alive(pid) for pid in children), "every daphne process stopped with the supervisor"
    finally:
        site.stop()


def test_the_asyncio_loop_can_be_chosen(sqlite_env):
    site = SiteProcess(env=sqlite_env, args=("--loop", "asyncio"))
    try:
        loops = wait_for(lambda: serving(site), timeout=30, what="daphne did not start")
        assert list(loops.values()) == ["asyncio.unix_events._UnixSelectorEventLoop"]
        assert not uvloop_loaded(next(iter(loops)))
    finally:
        site.stop()


def test_daphne_processes_die_with_a_killed_supervisor(sqlite_env):
    site = SiteProcess(env=sqlite_env)
    children = site.children()
    assert len(children) == 1
    site.kill()  # waits until the daphne processes are gone, or fails
    with pytest.raises(httpx.TransportError):
        httpx.get(site.url + "/accounts/login/", timeout=2, trust_env=False)


def _alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_mid_answer_ends_it_interrupted_with_its_text_and_tells_the_socket(
    tmp_path, emulator_server
):
    database = tmp_path / "sigterm.sqlite3"
    env = site_env(database_url=sqlite_url(database), gptalk_url=emulator_server.url)
    manage("migrate", "--noinput", env=env)
    emulator_server.reset()
    emulator_server.next(reply="t" * 4000, chunk_chars=4, interval_ms=20)
    site = SiteProcess(env=env)
    person = Browser(site)
    person.signup("stopper", PASSWORD)
    cookie = person.cookie_header()
    person.close()

    async def scenario():
        socket = await Socket.open(site, cookie)
        await socket.send({"type": "chat.send", "conversation": None, "content": "stop the server"})
        frames = await socket.recv_until(lambda f: f["type"] == "delta" and f["seq"] >= 5)
        message_id = frames[-1]["message"]
        asked = time.monotonic()
        site.process.send_signal(signal.SIGTERM)
        frames += await socket.recv_until(lambda f: f["type"] == "done", timeout=10)
        return message_id, frames, asked

    try:
        message_id, frames, asked = asyncio.run(scenario())
        # "Within a few seconds": the product's deadline for a stop, not a benchmark.
        assert site.process.wait(timeout=10) == 0
        stopped_in = time.monotonic() - asked
    finally:
        site.stop()
    print(f"SIGTERM mid-answer: process exited in {stopped_in:.2f} s")
    done = frames[-1]
    assert done["message"] == message_id and done["status"] == "interrupted" and done["error"]
    assert done["content"] and set(done["content"]) == {"t"}
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT status, content FROM chat_message WHERE id = ?", (message_id,)).fetchone()
    assert row == ("interrupted", done["content"]), "saved with every character the socket was told"
