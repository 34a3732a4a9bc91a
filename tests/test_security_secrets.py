"""The upstream GPTalk account is the site's, not the users'.

The login token (one per process, shared by every user, good for 5 answers) and
the one-use stream tokens are credentials of the site's GPTalk account: anyone
holding them could spend the site's allowance. They must never reach a browser
(no websocket frame, no page, not even the admin), and never be logged.

The tokens are read where the client receives them (the login answer and the
text answer), by wrapping those two functions without changing what they do;
the login token is cross-checked with GPTalk._auth, the process-wide state.
"""

import asyncio
import json
import logging

import pytest
from django.test import AsyncClient

from chat.models import Conversation, Message
from chat.upstream import gptalk as gptalk_module
from chat.upstream.gptalk import GPTalk
from tests.ws import connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
REPLY = "A scripted answer that streams in a few pieces, long enough to watch mid-way."


@pytest.fixture
async def alice(django_user_model):
    return await django_user_model.objects.acreate(username="alice")


@pytest.fixture
async def bob(django_user_model):
    return await django_user_model.objects.acreate(username="bob")


@pytest.fixture
def issued(monkeypatch) -> dict[str, list[str]]:
    """Every login token and stream token the emulator hands this process."""
    tokens: dict[str, list[str]] = {"login": [], "stream": []}
    real_login = GPTalk._login
    real_stream_token_of = gptalk_module._stream_token_of

    async def login(cls, client, config, headers):
        data = await real_login(client, config, headers)
        tokens["login"].append(data["token"])
        return data

    def stream_token_of(data):
        token = real_stream_token_of(data)
        if token:
            tokens["stream"].append(token)
        return token

    monkeypatch.setattr(GPTalk, "_login", classmethod(login))
    monkeypatch.setattr(gptalk_module, "_stream_token_of", stream_token_of)
    return tokens


@pytest.fixture
def every_logger_at_debug(caplog):
    """Root and every logger that exists at DEBUG, except httpx and httpcore.

    Those two stay as settings.LOGGING pins them (WARNING): httpx logs every
    request URL at INFO, and the GPTalk protocol puts the stream token in the
    URL (`GET .../stream?token=...`). `test_http_client_loggers_stay_quiet`
    checks that pin.
    """
    pinned = {"httpx", "httpcore"}
    saved = {}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] not in pinned:
            saved[name] = logger.level
            logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


class Recorder:
    """A websocket and every raw frame it received."""

    def __init__(self, communicator) -> None:
        self.ws = communicator
        self.raw: list[str] = []

    async def frame(self, timeout: float = 15) -> dict | str:
        raw = await self.ws.receive_from(timeout=timeout)
        self.raw.append(raw)
        return json.loads(raw)

    async def until(self, predicate, timeout: float = 15) -> list:
        frames = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"no matching frame within {timeout}s; got {frames[-5:]}"
            frames.append(await self.frame(timeout=remaining))
            if predicate(frames[-1]):
                return frames

    async def send(self, frame: dict) -> None:
        await self.ws.send_json_to(frame)

    async def chat(self, content: str, conversation: int | None = None) -> list:
        await self.send({"type": "chat.send", "conversation": conversation, "content": content})
        return await self.until(is_done)

    async def drain(self) -> None:
        """Whatever is still queued (e.g. a retitle after `done`)."""
        while not await self.ws.receive_nothing(timeout=0.2):
            await self.frame()


def is_done(frame) -> bool:
    return isinstance(frame, dict) and frame.get("type") == "done"


def ended_history(frame) -> bool:
    """A history in which no answer runs (the answer ended before the socket looked)."""
    return (
        isinstance(frame, dict)
        and frame.get("type") == "history"
        and all(m["status"] not in ("pending", "streaming") for m in frame["messages"])
    )


async def open_socket(user, path: str = "/ws/chat/") -> Recorder:
    communicator = await connect(user, path=path)
    assert (await communicator.connect())[0]
    return Recorder(communicator)


# ---- one login for everyone ----------------------------------------------------------


async def test_two_users_chatting_at_once_share_one_login(alice, bob, emulator, issued):
    for _ in range(6):
        await emulator.anext(reply=REPLY, chunk_chars=4, interval_ms=3)
    alice_ws, bob_ws = await open_socket(alice), await open_socket(bob, "/ws/chat/?v=2")
    try:

        async def conversation_of(recorder: Recorder, questions: list[str]) -> list[str]:
            frames = await recorder.chat(questions[0])
            conversation = frames[0]["conversation"]["id"]
            statuses = [frames[-1]["status"]]
            for question in questions[1:]:
                statuses.append((await recorder.chat(question, conversation))[-1]["status"])
            return statuses

        alice_statuses, bob_statuses = await asyncio.gather(
            conversation_of(alice_ws, ["one", "two", "three"]),
            conversation_of(bob_ws, ["uno", "dos"]),
        )
        assert alice_statuses == ["complete"] * 3 and bob_statuses == ["complete"] * 2
        stats = await emulator.astats()
        assert (stats["logins"], stats["texts"], stats["streams"]) == (1, 5, 5)
        assert len(issued["login"]) == 1 and len(set(issued["stream"])) == 5
        assert GPTalk._auth["token"] == issued["login"][0]
        assert GPTalk.used_times == 5

        # The sixth answer needs a new login: gptalk.net allowed 5 replies per login.
        assert (await alice_ws.chat("four"))[-1]["status"] == "complete"
        stats = await emulator.astats()
        assert (stats["logins"], stats["texts"], stats["rejected"]) == (2, 6, 0)
        assert GPTalk._auth["token"] == issued["login"][1] != issued["login"][0]
    finally:
        await alice_ws.ws.disconnect()
        await bob_ws.ws.disconnect()


# ---- no token reaches a browser or a log -------------------------------------------


async def test_upstream_tokens_reach_no_browser_no_log_no_page(
    alice, bob, emulator, issued, every_logger_at_debug, capfd, django_user_model, settings
):
    caplog = every_logger_at_debug
    settings.DEBUG = True  # Django logs every SQL query with its parameters at DEBUG
    alice_ws = await open_socket(alice)
    alice_v2 = await open_socket(alice, "/ws/chat/?v=2")
    bob_ws = await open_socket(bob, "/ws/chat/?v=2")
    sockets = [alice_ws, alice_v2, bob_ws]
    try:
        # Alice's answer is watched mid-way by her second tab (a snapshot, then deltas).
        await emulator.anext(reply=REPLY * 4, chunk_chars=4, interval_ms=5)
        await alice_ws.send({"type": "chat.send", "conversation": None, "content": "first"})
        first = await alice_ws.until(lambda f: isinstance(f, dict) and f["type"] == "delta" and f["seq"] >= 3)
        conversation_id = first[0]["conversation"]["id"]
        await alice_v2.send({"type": "conversation.open", "conversation": conversation_id})
        await alice_v2.until(lambda f: is_done(f) or ended_history(f))
        first += await alice_ws.until(is_done)
        assert first[-1]["status"] == "complete"

        # The login token refused once (logged, then a fresh login), a cut stream,
        # a failed text request, and Bob chatting meanwhile.
        await emulator.anext(reply=REPLY, fault="text_no_data")
        await emulator.anext(reply=REPLY)
        assert (await alice_ws.chat("second", conversation_id))[-1]["status"] == "complete"
        await emulator.anext(reply=REPLY, fault="stream_cut")
        assert (await alice_ws.chat("third", conversation_id))[-1]["status"] == "failed"
        await emulator.anext(fault="text_500")
        assert (await bob_ws.chat("bob's question"))[-1]["status"] == "failed"
        await emulator.anext(reply=REPLY)
        await bob_ws.send({"type": "chat.regenerate", "message": (await bob_last_answer(bob)).pk})
        assert (await bob_ws.until(is_done))[-1]["status"] == "complete"
        # Frames refused with errors, too.
        await bob_ws.send({"type": "conversation.open", "conversation": conversation_id})
        # (The retitle of Bob's chat after its first complete answer may come first.)
        refused = await bob_ws.until(lambda f: isinstance(f, dict) and f["type"] == "error")
        assert refused[-1]["code"] == "not_found"
        for recorder in sockets:
            await recorder.drain()
    finally:
        for recorder in sockets:
            await recorder.ws.disconnect()

    stats = await emulator.astats()
    assert (stats["logins"], stats["faults"]) == (2, 3), stats
    assert len(set(issued["login"])) == 2 and len(set(issued["stream"])) == stats["texts"] == 4
    assert GPTalk._auth["token"] == issued["login"][-1]
    secrets = issued["login"] + issued["stream"]
    assert all(isinstance(s, str) and len(s) >= 16 for s in secrets)

    # Pages: the chat page of each conversation, and the admin's views of them.
    staff = await django_user_model.objects.acreate(username="boss", is_staff=True, is_superuser=True)
    pages = {}
    for user in (alice, bob):
        client = AsyncClient()
        await client.aforce_login(user, backend=MODEL_BACKEND)
        pages[f"{user.username} /"] = await client.get("/")
        async for conversation in Conversation.objects.filter(owner=user):
            pages[f"{user.username} /c/{conversation.pk}/"] = await client.get(f"/c/{conversation.pk}/")
        pages[f"{user.username} /api/models/"] = await client.get("/api/models/")
    admin = AsyncClient()
    await admin.aforce_login(staff, backend=MODEL_BACKEND)
    for path in ("/admin/", "/admin/chat/conversation/", "/admin/chat/message/"):
        pages[path] = await admin.get(path)
    async for conversation in Conversation.objects.all():
        path = f"/admin/chat/conversation/{conversation.pk}/transcript/"
        pages[path] = await admin.get(path)
    async for message in Message.objects.all():
        path = f"/admin/chat/message/{message.pk}/change/"
        pages[path] = await admin.get(path)
    assert all(page.status_code == 200 for page in pages.values()), {
        path: page.status_code for path, page in pages.items() if page.status_code != 200
    }
    assert any(REPLY in page.content.decode() for page in pages.values())

    captured = capfd.readouterr()
    records = [f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records]
    assert any("Logged in to GPTalk" in r for r in records), "the log capture saw the client's records"
    assert any(r.levelno == logging.DEBUG and r.name == "django.db.backends" for r in caplog.records)
    assert any("refused the login token" in r for r in records)
    places = {
        "websocket frames": "\n".join(recorder_raw for r in sockets for recorder_raw in r.raw),
        "log records": "\n".join(records),
        "captured stdout": captured.out,
        "captured stderr": captured.err,
        **{f"page {path}": page.content.decode() for path, page in pages.items()},
        **{f"headers of {path}": repr(page.headers) + repr(page.cookies) for path, page in pages.items()},
    }
    leaks = [(where, secret[:6] + "…") for secret in secrets for where, text in places.items() if secret in text]
    assert not leaks, f"upstream tokens found in: {leaks}"
    # The saved rows hold no token either (the admin shows them; exports read them).
    async for message in Message.objects.all():
        assert not any(s in message.content or s in message.error for s in secrets)


async def bob_last_answer(bob) -> Message:
    return await Message.objects.filter(conversation__owner=bob, role=Message.Role.ASSISTANT).alatest("id")


def test_http_client_loggers_stay_quiet(settings):
    """httpx logs each request's URL at INFO, and the stream URL carries the stream
    token: the settings keep httpx and httpcore at WARNING whatever DJANGO_LOG_LEVEL says."""
    loggers = settings.LOGGING["loggers"]
    for name in ("httpx", "httpcore"):
        assert logging.getLevelName(loggers[name]["level"]) >= logging.WARNING
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING
