"""Two `manage.py serve` processes behind nginx (docs/nginx.conf), sharing the
real Redis channel layer and PostgreSQL.

An answer belongs to the process that runs it, not to a socket: a socket on the
other process watches it, stops it, and sees it marked interrupted when its
process is killed. Sockets go through the proxy; opened one after another they
land on alternate processes (least_conn), which each test checks.
"""

import asyncio
import re
import time
from contextlib import ExitStack

import psycopg
import pytest

from tests.fixtures.proxy import Nginx
from tests.fixtures.site import Browser, SiteProcess, Socket, manage, site_env

pytestmark = pytest.mark.multiprocess
pytest_plugins = ["tests.fixtures.services"]

PASSWORD = "a-long-unusual-passphrase-42"
LEASE = "2"


@pytest.fixture
def cluster(postgres_url, redis_url, emulator_server):
    env = site_env(
        database_url=postgres_url,
        gptalk_url=emulator_server.url,
        REDIS_URL=redis_url,
        CHAT_GENERATION_LEASE=LEASE,
    )
    manage("migrate", "--noinput", env=env)
    with ExitStack() as started:  # whatever started is stopped, even if a later step fails
        first = SiteProcess(env=env)
        started.callback(first.stop)
        second = SiteProcess(env=env)
        started.callback(second.stop)
        proxy = Nginx(upstreams=[first.port, second.port])
        started.callback(proxy.stop)
        # Shown by pytest only when the test failed.
        started.callback(lambda: print(
            "---- process 1 ----\n" + first.output() + "\n---- process 2 ----\n" + second.output()
            + "\n---- nginx ----\n" + proxy.output()
        ))
        emulator_server.reset()
        person = Browser(proxy)
        started.callback(person.close)
        person.signup("roamer", PASSWORD)
        yield Sites(first, second, proxy), person.cookie_header(), postgres_url


class Sites:
    def __init__(self, first: SiteProcess, second: SiteProcess, proxy: Nginx) -> None:
        self.processes, self.proxy = (first, second), proxy

    def connects(self) -> list[int]:
        return [p.output().count('"WSCONNECT /ws/chat/') for p in self.processes]

    async def open(self, cookie: str) -> tuple[Socket, SiteProcess]:
        """A socket through the proxy, and the process it reached."""
        before = self.connects()
        socket = await Socket.open(self.proxy, cookie)
        deadline = time.monotonic() + 10
        while self.connects() == before:  # daphne logs the connect just after the handshake
            assert time.monotonic() < deadline, "no process logged the socket"
            await asyncio.sleep(0.01)
        reached = [n for n, (a, b) in enumerate(zip(before, self.connects())) if b > a]
        assert len(reached) == 1
        return socket, self.processes[reached[0]]


def message_row(database_url: str, message_id: int) -> tuple[str, str]:
    with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as connection:
        return connection.execute(
            "SELECT status, content FROM chat_message WHERE id = %s", (message_id,)
        ).fetchone()


def is_done(frame: dict) -> bool:
    return frame["type"] == "done"


async def start_answer(sites: Sites, cookie) -> tuple[Socket, int, int, SiteProcess]:
    socket, process = await sites.open(cookie)
    await socket.send({"type": "chat.send", "conversation": None, "content": "across processes"})
    frames = await socket.recv_until(lambda f: f["type"] == "delta" and f["seq"] >= 3)
    return socket, frames[0]["conversation"]["id"], frames[-1]["message"], process


async def watch(sites: Sites, cookie, conversation_id, *, not_on: SiteProcess) -> Socket:
    socket, process = await sites.open(cookie)
    assert process is not not_on, "least_conn sent the second socket to the other process"
    await socket.send({"type": "conversation.open", "conversation": conversation_id})
    return socket


def replay(frames: list[dict]) -> tuple[str, list[int]]:
    """The text a client shows from a snapshot and the deltas after it, and their seqs."""
    text, seqs = "", []
    for frame in frames:
        if frame["type"] == "snapshot":
            text, seqs = frame["content"], [frame["seq"]]
        elif frame["type"] == "delta":
            text = frame["text"] if frame.get("reset") else text + frame["text"]
            seqs.append(frame["seq"])
    return text, seqs


def test_a_socket_on_another_process_sees_the_same_answer(cluster, emulator_server):
    sites, cookie, _ = cluster
    reply = "".join(f"[{i:03d}]" for i in range(120))
    emulator_server.next(reply=reply, chunk_chars=5, interval_ms=10)

    async def scenario():
        sender, conversation_id, message_id, running = await start_answer(sites, cookie)
        watcher = await watch(sites, cookie, conversation_id, not_on=running)
        watched = await watcher.recv_until(is_done)
        sent = await sender.recv_until(is_done)
        await sender.close()
        await watcher.close()
        return watched, sent

    watched, sent = asyncio.run(scenario())
    assert watched[0]["type"] == "history"
    text, seqs = replay(watched)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap, no duplicate"
    assert text == reply == watched[-1]["content"] == sent[-1]["content"]
    assert watched[-1]["status"] == "complete"


def test_stop_from_another_process_cancels_the_upstream(cluster, emulator_server):
    sites, cookie, database_url = cluster
    emulator_server.next(reply="s" * 3000, chunk_chars=4, interval_ms=20)

    async def scenario():
        sender, conversation_id, message_id, running = await start_answer(sites, cookie)
        watcher = await watch(sites, cookie, conversation_id, not_on=running)
        await watcher.recv_until(lambda f: f["type"] in ("snapshot", "delta"))
        assert emulator_server.stats()["active_streams"] == 1
        asked = time.monotonic()
        await watcher.send({"type": "chat.stop", "message": message_id})
        done = (await watcher.recv_until(is_done))[-1]
        while emulator_server.stats()["active_streams"] != 0:
            assert time.monotonic() - asked < 5, "the upstream stream was not cancelled"
            await asyncio.sleep(0.02)
        took = time.monotonic() - asked
        sender_done = (await sender.recv_until(is_done))[-1]
        await sender.close()
        await watcher.close()
        return message_id, done, sender_done, took

    message_id, done, sender_done, took = asyncio.run(scenario())
    print(f"stop from the other process cancelled the upstream in {took * 1000:.0f} ms")
    assert done["status"] == sender_done["status"] == "stopped"
    assert 0 < len(done["content"]) < 3000
    assert message_row(database_url, message_id) == ("stopped", done["content"])


def test_killing_the_process_leaves_an_interrupted_answer_the_other_shows(cluster, emulator_server):
    sites, cookie, database_url = cluster
    emulator_server.next(reply="k" * 3000, chunk_chars=4, interval_ms=20)

    async def scenario():
        sender, conversation_id, message_id, running = await start_answer(sites, cookie)
        watcher = await watch(sites, cookie, conversation_id, not_on=running)
        await watcher.recv_until(lambda f: f["type"] in ("snapshot", "delta"))
        # Kill it once a progress save holds some text.
        while not message_row(database_url, message_id)[1]:
            await asyncio.sleep(0.05)
        running.kill()
        done = (await watcher.recv_until(is_done, timeout=20))[-1]
        # A fresh socket through the proxy reaches the survivor and gets it from history too.
        late = await Socket.open(sites.proxy, cookie)
        await late.send({"type": "conversation.open", "conversation": conversation_id})
        history = await late.recv()
        await late.close()
        await watcher.close()
        return message_id, done, history

    message_id, done, history = asyncio.run(scenario())
    assert done["message"] == message_id
    assert done["status"] == "interrupted"
    assert done["error"]
    status, content = message_row(database_url, message_id)
    assert status == "interrupted"
    assert content and set(content) == {"k"}, "the text saved before the crash is kept"
    answer = next(m for m in history["messages"] if m["id"] == message_id)
    assert answer["status"] == "interrupted" and answer["content"] == content


def test_logging_out_closes_the_sessions_sockets_on_every_process(cluster):
    """The logout reaches one process over HTTP; the socket on the other hears
    it through Redis (chat/signouts.py)."""
    from chat.signouts import CLOSE_SIGNED_OUT

    sites, cookie, _ = cluster

    async def scenario():
        first, first_process = await sites.open(cookie)
        second, second_process = await sites.open(cookie)
        assert first_process is not second_process, "least_conn sent both sockets to one process"
        person = Browser(sites.proxy)
        try:
            person.client.cookies.update(dict(part.split("=", 1) for part in cookie.split("; ")))
            page = person.client.get("/")  # the chat page's logout form carries the CSRF token
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            response = person.client.post(
                "/accounts/logout/", data={"csrfmiddlewaretoken": token}, headers={"Referer": sites.proxy.url + "/"}
            )
            assert response.status_code == 302
        finally:
            person.close()
        codes = []
        for socket in (first, second):
            await asyncio.wait_for(socket.connection.wait_closed(), timeout=10)
            codes.append(socket.connection.close_code)
        return codes

    assert asyncio.run(scenario()) == [CLOSE_SIGNED_OUT, CLOSE_SIGNED_OUT]
