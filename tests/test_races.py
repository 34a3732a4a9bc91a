"""Two sockets of one user start an answer in one conversation at the same
instant (`chat.send`, or `chat.regenerate` of the same answer): exactly one
answer starts, the other socket gets `busy`. On one process (SQLite) and on
two processes behind nginx (PostgreSQL, Redis)."""

import asyncio
import sqlite3
import time

import pytest

from tests.fixtures.cluster import cluster_env, is_done
from tests.fixtures.site import Browser, SiteProcess, Socket, manage, sqlite_url

pytest_plugins = ["tests.fixtures.faults"]

PASSWORD = "a-long-unusual-passphrase-42"
ROUNDS = 3
ACTIVE = ("pending", "streaming")


async def settle(answers_in, conversation: int) -> None:
    deadline = time.monotonic() + 30
    while any(status in ACTIVE for _, status in answers_in(conversation)):
        assert time.monotonic() < deadline, "answers still running 30 s later"
        await asyncio.sleep(0.05)


async def race_round(entry, cookie: str, answers_in, kind: str, spread=None) -> None:
    """One conversation with a finished answer; two fresh sockets start another at once."""
    a = await Socket.open(entry, cookie)
    await a.send({"type": "chat.send", "conversation": None, "content": "race me", "ref": "setup"})
    frames = await a.recv_until(is_done)
    mine = next(f for f in frames if f["type"] == "message" and f.get("ref") == "setup")
    conversation, answer = mine["message"]["conversation"], frames[-1]["message"]
    await settle(answers_in, conversation)
    b = await Socket.open(entry, cookie)
    if spread is not None:
        spread()
    await b.send({"type": "conversation.open", "conversation": conversation})
    await b.recv_until(lambda f: f["type"] == "history")
    before = answers_in(conversation)
    if kind == "send":
        frame = {"type": "chat.send", "conversation": conversation, "content": "at once"}
    else:
        frame = {"type": "chat.regenerate", "message": answer}
    await asyncio.gather(a.send({**frame, "ref": "a"}), b.send({**frame, "ref": "b"}))
    seen = await asyncio.gather(
        a.recv_until(lambda f: is_done(f) or f["type"] == "error"),
        b.recv_until(lambda f: is_done(f) or f["type"] == "error"),
    )
    await settle(answers_in, conversation)
    after = answers_in(conversation)
    errors = [f for frames in seen for f in frames if f["type"] == "error"]
    await a.close()
    await b.close()
    assert len(after) == len(before) + 1, f"{kind}: {len(after) - len(before)} answers started at once"
    assert [(e["code"], e["ref"]) for e in errors] in ([("busy", "a")], [("busy", "b")]), errors


@pytest.fixture
def one_process(tmp_path, emulator_server):
    database = tmp_path / "race.sqlite3"
    env = cluster_env(database_url=sqlite_url(database), redis_url="", gptalk_url=emulator_server.url)
    env.pop("REDIS_URL")
    manage("migrate", "--noinput", env=env)
    site = SiteProcess(env=env)
    emulator_server.reset()
    person = Browser(site)
    try:
        person.signup("racer", PASSWORD)
    except BaseException:
        site.stop()
        raise
    cookie = person.cookie_header()
    person.close()

    def answers_in(conversation: int) -> list[tuple[int, str]]:
        with sqlite3.connect(database) as db:
            return db.execute(
                "SELECT id, status FROM chat_message WHERE conversation_id = ? AND role = 'assistant'",
                (conversation,),
            ).fetchall()

    yield site, cookie, answers_in
    site.stop()
    print(site.output())


@pytest.mark.parametrize("kind", ["send", "regenerate"])
def test_racing_starts_on_one_process(one_process, kind):
    site, cookie, answers_in = one_process

    async def scenario():
        for _ in range(ROUNDS):
            await race_round(site, cookie, answers_in, kind)

    asyncio.run(scenario())


@pytest.mark.multiprocess
@pytest.mark.parametrize("kind", ["send", "regenerate"])
def test_racing_starts_on_two_processes(cluster, kind):
    def spread():
        counts = cluster.websocket_connects()
        assert abs(counts[0] - counts[1]) <= 1 and all(counts), f"one socket per process: {counts}"

    async def scenario():
        for _ in range(ROUNDS):
            await race_round(cluster.proxy, cluster.cookie, cluster.answers_in, kind, spread=spread)

    asyncio.run(scenario())
