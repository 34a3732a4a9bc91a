"""A session that ends closes its open websockets (chat/signouts.py).

Real sockets on the real ASGI app, and the real views over Django's test
client: log out, change the password, deactivate and delete the account; and
the changes that must close nothing (a login elsewhere, another user's logout).
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from chat.signouts import CLOSE_SIGNED_OUT, session_user_id

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]

PASSWORD = "correct horse battery staple"
# Ample time for a socket that should close to have closed.
SETTLE = 3.0


async def _session(user) -> Client:
    """A browser: a real login through the login form (its own session)."""
    client = Client()
    response = await sync_to_async(client.post)(
        "/accounts/login/", {"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 302, response.content[:300]
    return client


async def _socket(client: Client) -> WebsocketCommunicator:
    from gptalk_site.asgi import application

    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    ws = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"http://localhost"), (b"cookie", cookie.encode())]
    )
    connected, _ = await ws.connect()
    assert connected
    return ws


async def _closed_with(ws: WebsocketCommunicator, timeout: float = SETTLE) -> int:
    """The close code the server sends (frames before it are skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, "the socket was not closed"
        output = await ws.receive_output(timeout=remaining)
        if output["type"] == "websocket.close":
            return output.get("code")


async def _still_open(ws: WebsocketCommunicator) -> bool:
    """Open after the grace: it answers a frame (an error for an unknown type)."""
    await asyncio.sleep(SETTLE)
    await ws.send_json_to({"type": "ping?"})
    frame = await ws.receive_json_from(timeout=5)
    return frame["type"] == "error" and frame["code"] == "bad_type"


async def test_logging_out_closes_that_sessions_sockets_and_only_those(alice, bob):
    phone, laptop, other = await _session(alice), await _session(alice), await _session(bob)
    phone_ws, laptop_ws, other_ws = await _socket(phone), await _socket(laptop), await _socket(other)
    try:
        await sync_to_async(phone.post)("/accounts/logout/")
        assert await _closed_with(phone_ws, timeout=3) == CLOSE_SIGNED_OUT
        assert await _still_open(laptop_ws)
        assert await _still_open(other_ws)
        # And that session cannot come back.
        from gptalk_site.asgi import application

        cookie = f"{settings.SESSION_COOKIE_NAME}={phone.cookies[settings.SESSION_COOKIE_NAME].value}"
        again = WebsocketCommunicator(
            application, "/ws/chat/", headers=[(b"origin", b"http://localhost"), (b"cookie", cookie.encode())]
        )
        assert (await again.connect())[0] is False
    finally:
        for ws in (laptop_ws, other_ws):
            await ws.disconnect()


async def test_a_password_change_ends_every_other_session(alice):
    here, elsewhere = await _session(alice), await _session(alice)
    here_ws, elsewhere_ws = await _socket(here), await _socket(elsewhere)
    old_key = here.cookies[settings.SESSION_COOKIE_NAME].value
    new_password = "a new horse staple 42"
    response = await sync_to_async(here.post)(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password},
    )
    assert response.status_code == 302
    assert await _closed_with(elsewhere_ws) == CLOSE_SIGNED_OUT
    assert await session_user_id(elsewhere.cookies[settings.SESSION_COOKIE_NAME].value) is None
    # The session that changed it lives on under a new key: its socket, opened
    # with the old key, closes, and the browser's new cookie connects again.
    assert await _closed_with(here_ws) == CLOSE_SIGNED_OUT
    new_key = here.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key != old_key and await session_user_id(new_key) == alice.pk
    again = await _socket(here)
    try:
        assert await _still_open(again)
    finally:
        await again.disconnect()


async def test_a_deactivated_account_is_signed_out_everywhere(alice):
    ws = await _socket(await _session(alice))
    user = await sync_to_async(get_user_model().objects.get)(pk=alice.pk)
    user.is_active = False
    await sync_to_async(user.save)()
    assert await _closed_with(ws) == CLOSE_SIGNED_OUT


async def test_deleting_the_account_closes_its_sockets(alice):
    browser, other_tab = await _session(alice), await _session(alice)
    ws, other_ws = await _socket(browser), await _socket(other_tab)
    response = await sync_to_async(browser.post)("/accounts/delete/", {"delete-password": PASSWORD})
    assert response.status_code in (200, 302)
    assert not await sync_to_async(get_user_model().objects.filter(pk=alice.pk).exists)()
    assert await _closed_with(ws) == CLOSE_SIGNED_OUT
    assert await _closed_with(other_ws) == CLOSE_SIGNED_OUT


async def test_a_login_elsewhere_closes_nothing(alice):
    ws = await _socket(await _session(alice))
    try:
        await _session(alice)  # stamps last_login: a save of the user
        assert await _still_open(ws)
    finally:
        await ws.disconnect()


async def test_the_session_check_deletes_no_session(alice):
    """Django's own check flushes a session whose hash differs; ours only reads:
    a password change must not end the session it was made in before that
    session's new hash is saved."""
    client = await _session(alice)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    user = await sync_to_async(get_user_model().objects.get)(pk=alice.pk)
    await sync_to_async(user.set_password)("changed without the session knowing")
    await sync_to_async(user.save)()
    assert await session_user_id(key) is None
    from django.contrib.sessions.models import Session

    assert await sync_to_async(Session.objects.filter(session_key=key).exists)()
    assert await session_user_id("no-such-session") is None
    assert await session_user_id(None) is None


# ---- telling a user's sockets from a request, when Redis misbehaves ------------------


@pytest.fixture
def silent_redis():
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def _refused_url() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}"  # closed again: nothing listens


@pytest.mark.parametrize("redis", ["silent", "refused"])
def test_a_request_is_not_held_by_a_redis_that_fails(settings, silent_redis, redis, caplog):
    """Logging out (or renaming a chat) tells the user's sockets through the
    layer; a Redis that refuses or never answers is logged, and the request
    goes on (the sockets' sessions are checked again when they reconnect)."""
    import threading

    from channels.layers import channel_layers

    from chat import events
    from chat.delivery.link import USER_TELL_TIMEOUT, user_tell

    url = silent_redis if redis == "silent" else _refused_url()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.RedisPubSubChannelLayer",
                                           "CONFIG": {"hosts": [url]}}}  # fmt: skip
    channel_layers.backends.clear()
    try:
        done = threading.Event()
        thread = threading.Thread(target=lambda: (user_tell(1, events.sessions(user=1, ended=None)), done.set()))
        thread.start()
        # Generous: only a request held for good fails this.
        assert done.wait(USER_TELL_TIMEOUT * 10), "the request is still waiting for Redis"
        thread.join()
    finally:
        channel_layers.backends.clear()
    assert "could not tell user 1's sockets about user.sessions" in caplog.text
