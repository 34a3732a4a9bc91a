"""A process killed mid-answer: on the next start the answer is marked
interrupted with the text saved before the crash, and a socket shows it."""

import asyncio
import sqlite3
import time

from tests.fixtures.site import Browser, SiteProcess, Socket, manage, site_env, sqlite_url

PASSWORD = "a-long-unusual-passphrase-42"


def test_answer_left_streaming_by_a_killed_process_is_interrupted_after_restart(tmp_path, emulator_server):
    database = tmp_path / "crash.sqlite3"
    env = site_env(database_url=sqlite_url(database), gptalk_url=emulator_server.url,
                   CHAT_GENERATION_LEASE="2")
    manage("migrate", "--noinput", env=env)
    emulator_server.reset()
    emulator_server.next(reply="c" * 3000, chunk_chars=4, interval_ms=20)
    site = SiteProcess(env=env)
    person = Browser(site)
    person.signup("crasher", PASSWORD)
    cookie = person.cookie_header()
    person.close()

    async def before_crash():
        socket = await Socket.open(site, cookie)
        await socket.send({"type": "chat.send", "conversation": None, "content": "crash me"})
        frames = await socket.recv_until(lambda f: f["type"] == "delta" and f["seq"] >= 3)
        # Kill it once a progress save holds some text.
        while not saved_text(frames[-1]["message"]):
            await asyncio.sleep(0.05)
        site.kill()
        return frames[0]["conversation"]["id"], frames[-1]["message"]

    def saved_text(message_id: int) -> str:
        with sqlite3.connect(database) as db:
            return db.execute("SELECT content FROM chat_message WHERE id = ?", (message_id,)).fetchone()[0]

    conversation_id, message_id = asyncio.run(before_crash())
    with sqlite3.connect(database) as db:
        status, saved = db.execute(
            "SELECT status, content FROM chat_message WHERE id = ?", (message_id,)
        ).fetchone()
    assert status == "streaming" and saved, "the crash left the answer streaming, with text"

    restarted = SiteProcess(env=env)
    try:
        async def after_restart():
            socket = await Socket.open(restarted, cookie)
            await socket.send({"type": "conversation.open", "conversation": conversation_id})
            history = await socket.recv()
            answer = next(m for m in history["messages"] if m["id"] == message_id)
            if answer["status"] == "streaming":
                # Not swept yet: the socket is told when it is.
                done = (await socket.recv_until(lambda f: f["type"] == "done", timeout=20))[-1]
                assert done["message"] == message_id
                answer = {**answer, **done}
            await socket.close()
            return history, answer

        history, answer = asyncio.run(after_restart())
    finally:
        restarted.stop()
    assert history["type"] == "history"
    # Swept before or after the socket looked: either way it shows as interrupted.
    assert answer["status"] == "interrupted"
    assert answer["content"] == saved and answer["error"]
    with sqlite3.connect(database) as db:
        assert db.execute(
            "SELECT status, content FROM chat_message WHERE id = ?", (message_id,)
        ).fetchone() == ("interrupted", saved)


def test_a_restarted_process_with_no_socket_sweeps_within_the_lease(tmp_path, emulator_server):
    """The sweep starts with the process, not with the first socket: nobody
    connects after the restart and the answer is still marked interrupted."""
    database = tmp_path / "nobody.sqlite3"
    lease = 2.0
    env = site_env(database_url=sqlite_url(database), gptalk_url=emulator_server.url,
                   CHAT_GENERATION_LEASE=str(lease))
    manage("migrate", "--noinput", env=env)
    emulator_server.reset()
    emulator_server.next(reply="n" * 3000, chunk_chars=4, interval_ms=20)
    site = SiteProcess(env=env)
    person = Browser(site)
    person.signup("nobody", PASSWORD)
    cookie = person.cookie_header()
    person.close()

    def row(message_id: int) -> tuple[str, str]:
        with sqlite3.connect(database) as db:
            return db.execute("SELECT status, content FROM chat_message WHERE id = ?", (message_id,)).fetchone()

    async def before_crash():
        socket = await Socket.open(site, cookie)
        await socket.send({"type": "chat.send", "conversation": None, "content": "nobody returns"})
        frames = await socket.recv_until(lambda f: f["type"] == "delta" and f["seq"] >= 3)
        message_id = frames[-1]["message"]
        # Kill it once a progress save holds some text.
        while not row(message_id)[1]:
            await asyncio.sleep(0.05)
        site.kill()
        return message_id

    message_id = asyncio.run(before_crash())
    status, saved = row(message_id)
    assert status == "streaming" and saved
    restarted = SiteProcess(env=env)
    started = time.monotonic()
    try:
        # The lease after the last save, plus one sweep period (half a lease):
        # the product's deadline for a dead process's answers.
        while row(message_id)[0] == "streaming":
            assert time.monotonic() - started < 2 * lease + 5, "still streaming: nothing swept it"
            time.sleep(0.1)
        swept_in = time.monotonic() - started
    finally:
        restarted.stop()
    print(f"restart with no socket: answer marked interrupted {swept_in:.2f} s after the start")
    assert row(message_id) == ("interrupted", saved)
    assert "WSCONNECT" not in restarted.output(), "no socket connected to the restarted process"
