"""Helpers for consumer tests: a logged-in WebsocketCommunicator on the real ASGI app."""

import asyncio
import json

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from gptalk_site.asgi import application


@sync_to_async
def session_cookie_for(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


async def connect(
    user=None, origin: str | None = "http://localhost", path: str = "/ws/chat/"
) -> WebsocketCommunicator:
    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        headers.append((b"cookie", (await session_cookie_for(user)).encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    return communicator


async def receive_until(communicator, predicate, timeout: float = 10.0) -> list[dict]:
    """Collect frames until one satisfies `predicate`; return them all (that one last)."""
    frames: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"no matching frame within {timeout}s; got {frames[-5:]}"
        frame = await communicator.receive_json_from(timeout=remaining)
        frames.append(frame)
        if predicate(frame):
            return frames


def is_done(frame: dict) -> bool:
    return frame.get("type") == "done"


async def send_raw(communicator, text: str) -> None:
    await communicator.send_to(text_data=text)


def dumps(obj) -> str:
    return json.dumps(obj)


async def poll(predicate, timeout: float = 10.0, interval: float = 0.02):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(interval)


async def send_and_finish(ws, *, conversation=None, content="Hi there", ref="r1") -> list[dict]:
    await ws.send_json_to(
        {"type": "chat.send", "conversation": conversation, "content": content, "ref": ref}
    )
    return await receive_until(ws, is_done)


def replay(frames: list, message_id: int) -> tuple[str, list[int]]:
    """The text a v1 client builds for one answer from its frames, and the seqs it saw."""
    text, seqs = "", []
    for frame in frames:
        if not isinstance(frame, dict) or frame.get("message") != message_id:
            continue
        if frame["type"] == "snapshot":
            text, seqs = frame["content"], [frame["seq"]]
        elif frame["type"] == "delta":
            text = frame["text"] if frame.get("reset") else text + frame["text"]
            seqs.append(frame["seq"])
    return text, seqs
