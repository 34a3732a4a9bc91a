"""Cross-site websocket hijacking: only pages of this site may open the chat socket.

A browser sends the session cookie with a websocket handshake to any site, so a
page on evil.example could open /ws/chat/ as the logged-in person and read their
chats. The Origin header is what tells the two apart: gptalk_site/asgi.py wraps
the socket in channels' AllowedHostsOriginValidator (origins whose host is in
ALLOWED_HOSTS). Here a table of origins, in the spirit of channels' own tests of
OriginValidator, each with a logged-in user's real session cookie.

Tests run with DEBUG on and ALLOWED_HOSTS localhost,127.0.0.1,[::1].
"""

import asyncio
import importlib.util
import json

import django.core.asgi
import pytest
import websockets
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from tests.fixtures.emulator import REPO_ROOT
from tests.fixtures.site import Browser, SiteProcess, manage, site_env, sqlite_url
from tests.ws import connect, session_cookie_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]

PASSWORD = "a-long-unusual-passphrase-42"

ALLOWED = [
    "http://localhost",
    "http://localhost:8000",
    "https://localhost",
    "http://LOCALHOST:8000",
    "http://127.0.0.1:8000",
    "http://[::1]:8000",
]

REFUSED = [
    "http://evil.example",
    "https://localhost.evil.example",
    "http://evil.example/localhost",
    "http://127.0.0.1.evil.example",
    "http://localhost.evil.example:8000",
    "http://sub.localhost",
    "http://localhost.",
    "http://localhost@evil.example",
    "http://localhost:8000@evil.example",
    "http://evil.example#@localhost",
    "null",
    None,  # no Origin header at all
    "",
    "file://",
    "file:///home/someone/page.html",
    "chrome-extension://abc",
    "localhost",  # not an origin: no scheme, so no host
    "http://" + "a" * 100_000 + ".evil.example",  # a very long origin
    "http://lоcalhost",  # Cyrillic "о": a non-ASCII look-alike host
    "http://ｌｏｃａｌｈｏｓｔ",  # fullwidth letters
    "http://évil.example",
    "http://127.0.0.2",
    "http://0.0.0.0",
]


def short(origin) -> str:
    if isinstance(origin, bool):
        return "allowed" if origin else "refused"
    if origin is None:
        return "missing"
    return repr(origin) if len(origin) <= 60 else f"{origin[:30]!r}... ({len(origin)} chars)"


@pytest.fixture
async def alice(django_user_model):
    # No password: hashing one costs half a second, and the socket needs only a session.
    return await django_user_model.objects.acreate(username="alice")


async def handshake(communicator: WebsocketCommunicator) -> bool:
    connected, _ = await communicator.connect(timeout=5)
    return connected


async def assert_usable(communicator: WebsocketCommunicator) -> None:
    """An accepted socket is the consumer's: a frame gets the protocol's answer."""
    await communicator.send_to(text_data=json.dumps({"type": "conversation.open", "conversation": 999_999_999}))
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["type"] == "error" and reply["code"] == "not_found"


@pytest.mark.parametrize("origin", ALLOWED, ids=short)
async def test_allowed_origin_connects(alice, origin):
    communicator = await connect(alice, origin=origin)
    try:
        assert await handshake(communicator), f"origin {short(origin)} was refused"
        await assert_usable(communicator)
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("origin", REFUSED, ids=short)
async def test_foreign_origin_is_refused_at_the_handshake(alice, origin):
    communicator = await connect(alice, origin=origin)
    try:
        assert not await handshake(communicator), f"origin {short(origin)} was let in"
    finally:
        await communicator.disconnect()


async def test_origin_bytes_that_are_not_utf8_are_refused(alice):
    cookie = (await session_cookie_for(alice)).encode()
    communicator = WebsocketCommunicator(
        _application(), "/ws/chat/", headers=[(b"origin", b"http://\xff\xfelocalhost"), (b"cookie", cookie)]
    )
    try:
        assert not await handshake(communicator)
    finally:
        await communicator.disconnect()


# ---- a production-like ALLOWED_HOSTS --------------------------------------------------


def _application():
    from gptalk_site.asgi import application

    return application


def fresh_application():
    """gptalk_site/asgi.py run again under the current settings.

    channels reads ALLOWED_HOSTS when the validator is built (at import), so an
    override needs the module executed anew. Django's own ASGI handler is reused:
    calling get_asgi_application() again would re-run django.setup() and with it
    the logging configuration of the whole test process.
    """
    from gptalk_site import asgi as real_asgi

    spec = importlib.util.spec_from_file_location(
        "gptalk_site_asgi_under_test", REPO_ROOT / "gptalk_site" / "asgi.py"
    )
    module = importlib.util.module_from_spec(spec)
    original = django.core.asgi.get_asgi_application
    django.core.asgi.get_asgi_application = lambda: real_asgi.django_asgi_app
    try:
        spec.loader.exec_module(module)
    finally:
        django.core.asgi.get_asgi_application = original
    return module.application


async def connect_to(application, user, origin: str | None) -> WebsocketCommunicator:
    headers = [(b"cookie", (await session_cookie_for(user)).encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, "/ws/chat/", headers=headers)


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://chat.example.com", True),
        ("https://chat.example.com:443", True),
        ("https://CHAT.example.com", True),
        ("http://localhost", False),
        ("http://127.0.0.1:8000", False),
        ("http://[::1]:8000", False),
        ("https://evil.chat.example.com", False),
        ("https://chat.example.com.evil.example", False),
        ("https://chat.example.com@evil.example", False),
        ("https://example.com", False),
        ("null", False),
        (None, False),
    ],
    ids=short,
)
async def test_production_allowed_hosts(alice, settings, origin, allowed, debug):
    settings.DEBUG = debug
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    application = fresh_application()
    assert django_settings.ALLOWED_HOSTS == ["chat.example.com"]
    communicator = await connect_to(application, alice, origin)
    try:
        assert await handshake(communicator) is allowed, f"origin {short(origin)}"
        if allowed:
            await assert_usable(communicator)
    finally:
        await communicator.disconnect()


# ---- a real daphne process --------------------------------------------------------------


@pytest.fixture
def site(tmp_path):
    # No answer is asked for: the GPTalk URL is a closed loopback port.
    env = site_env(database_url=sqlite_url(tmp_path / "origins.sqlite3"), gptalk_url="http://127.0.0.1:9")
    manage("migrate", "--noinput", env=env)
    process = SiteProcess(env=env)
    yield process
    process.stop()


def test_daphne_answers_403_to_a_foreign_origin(site):
    person = Browser(site)
    try:
        person.signup("victim", PASSWORD)
        cookie = person.cookie_header()
    finally:
        person.close()

    async def status_of(origin: str | None) -> int:
        headers = {"Cookie": cookie}
        if origin is not None:
            headers["Origin"] = origin
        try:
            async with websockets.connect(site.ws_url, additional_headers=headers, open_timeout=10) as socket:
                await socket.send(json.dumps({"type": "conversation.open", "conversation": 999_999_999}))
                reply = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
                assert reply["code"] == "not_found"
                return 101
        except websockets.exceptions.InvalidStatus as refused:
            return refused.response.status_code

    async def attempts() -> dict:
        origins = [
            site.url,
            "http://evil.example",
            "null",
            None,
            "http://localhost@evil.example",
            "http://127.0.0.1.evil.example",
            "chrome-extension://abc",
        ]
        return {origin: await status_of(origin) for origin in origins}

    statuses = asyncio.run(attempts())
    assert statuses == {
        site.url: 101,
        "http://evil.example": 403,
        "null": 403,
        None: 403,
        "http://localhost@evil.example": 403,
        "http://127.0.0.1.evil.example": 403,
        "chrome-extension://abc": 403,
    }
