"""The newcomer's path, with real processes: daphne, the emulator, a websocket client.

Sign up over HTTP, chat over a real websocket, see the streamed answer saved,
then a superuser made with `createsuperuser` sees the conversation in /admin/.
"""

import asyncio
import json

import pytest
import websockets

from tests.fixtures.site import Browser, SiteProcess, manage, site_env, sqlite_url

PASSWORD = "a-long-unusual-passphrase-42"


@pytest.fixture
def site(tmp_path, emulator_server):
    env = site_env(database_url=sqlite_url(tmp_path / "e2e.sqlite3"), gptalk_url=emulator_server.url)
    manage("migrate", "--noinput", env=env)
    process = SiteProcess(env=env)
    yield process
    process.stop()


async def chat_once(site: SiteProcess, cookie: str, content: str) -> list[dict]:
    frames = []
    async with websockets.connect(
        site.ws_url, additional_headers={"Cookie": cookie, "Origin": site.url}, open_timeout=10
    ) as socket:
        await socket.send(json.dumps({"type": "chat.send", "conversation": None, "content": content}))
        while True:
            frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=15))
            frames.append(frame)
            if frame["type"] == "done":
                break
        # After the first answer the conversation gets a short title.
        frames.append(json.loads(await asyncio.wait_for(socket.recv(), timeout=15)))
        return frames


def test_signup_chat_and_admin_end_to_end(site, emulator_server, tmp_path):
    emulator_server.reset()
    reply = "## Streamed\n\nEvery piece arrives as it is written — «offline»."
    emulator_server.next(reply=reply, chunk_chars=3, interval_ms=5)

    person = Browser(site)
    person.signup("newcomer", PASSWORD)
    home = person.client.get("/")
    assert home.status_code == 200

    frames = asyncio.run(chat_once(site, person.cookie_header(), "Hello from a real socket"))
    deltas = [f for f in frames if f["type"] == "delta"]
    assert len(deltas) > 5, "the answer streamed in pieces"
    assert "".join(d["text"] for d in deltas) == reply
    done, retitled = frames[-2], frames[-1]
    assert done["status"] == "complete" and done["content"] == reply
    conversation = frames[0]["conversation"]
    assert retitled["type"] == "conversation" and retitled["conversation"]["id"] == conversation["id"]
    assert retitled["conversation"]["title"] == "From a real socket"

    # The conversation is in the sidebar when the person comes back.
    assert "From a real socket" in person.client.get("/").text
    person.close()

    manage(
        "createsuperuser", "--noinput", "--username", "boss", "--email", "boss@example.com",
        env={**site.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )
    staff = Browser(site)
    response = staff.csrf_post("/admin/login/?next=/admin/", {"username": "boss", "password": PASSWORD})
    assert response.status_code == 302
    changelist = staff.client.get("/admin/chat/conversation/")
    assert changelist.status_code == 200
    assert "From a real socket" in changelist.text
    page = staff.client.get(f"/admin/chat/conversation/{conversation['id']}/transcript/")
    assert page.status_code == 200
    assert "Streamed" in page.text and "newcomer" in page.text
    staff.close()


def test_anonymous_and_foreign_origin_sockets_are_refused_by_the_server(site):
    async def attempt(headers):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(site.ws_url, additional_headers=headers, open_timeout=10):
                pass
        return refused.value.response.status_code

    assert asyncio.run(attempt({"Origin": site.url})) == 403
    person = Browser(site)
    person.signup("someone", PASSWORD)
    assert asyncio.run(attempt({"Origin": "http://evil.example", "Cookie": person.cookie_header()})) == 403
    person.close()


def test_daphne_refuses_a_frame_over_the_limit_and_the_consumer_one_just_under(site, emulator_server):
    """Two limits: daphne closes the socket on a message over
    CHAT_WS_MAX_MESSAGE_CHARS (1009, never buffered whole); under it, the
    consumer still refuses an over-long message with an error frame."""
    from django.conf import settings

    person = Browser(site)
    person.signup("bulky", PASSWORD)
    cookie = person.cookie_header()
    person.close()

    async def scenario():
        headers = {"Cookie": cookie, "Origin": site.url}
        async with websockets.connect(site.ws_url, additional_headers=headers, max_size=None) as socket:
            too_long = json.dumps({"type": "chat.send", "conversation": None,
                                   "content": "x" * (settings.CHAT_MAX_MESSAGE_CHARS + 1)})
            await socket.send(too_long)
            refused = json.loads(await asyncio.wait_for(socket.recv(), timeout=15))
            await socket.send(json.dumps({"type": "chat.send", "conversation": None,
                                          "content": "y" * (settings.CHAT_WS_MAX_MESSAGE_CHARS + 10)}))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), timeout=15)
        # The server is fine: a new socket works.
        async with websockets.connect(site.ws_url, additional_headers=headers) as again:
            await again.send(json.dumps({"type": "conversation.open", "conversation": 999}))
            after = json.loads(await asyncio.wait_for(again.recv(), timeout=15))
        return refused, closed.value, after

    refused, closed, after = asyncio.run(scenario())
    assert refused["type"] == "error" and refused["code"] == "too_long"
    # daphne (autobahn) fails the connection: close code 1009, or the TCP
    # connection dropped without a close frame; never an answer.
    assert closed.rcvd is None or closed.rcvd.code == 1009
    assert after["code"] == "not_found"
