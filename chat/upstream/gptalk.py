"""Async client of the GPTalk API: an httpx port of gpt4free's `GPTalk` provider.

The wire protocol is docs/gptalk-protocol.md (the contract): log in, start a
reply with the login token, then stream the reply with a one-use stream token.
Configuration (GPTALK_URL, GPTALK_PROXY, timeouts, transport) and the shared
connection pools live in http.py; the stream parser and the delta logic in
gptalk_stream.py. Errors are the typed ones of errors.py, worded for GPTalk.

    async for delta in GPTalk.create_async_generator(messages=messages):
        text = str(delta) if isinstance(delta, ContentReset) else text + delta
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeGuard
from urllib.parse import urlencode

import httpx

from .client import request_build, response_chunks
from .errors import (
    AuthError,
    ProtocolError,
    QuotaExceeded,
    StreamIncomplete,
    UpstreamError,
    UpstreamUnavailable,
)
from .gptalk_stream import ContentReset, DeltaStream
from .http import (
    TRANSPORT_ERRORS,
    Config,
    Messages,
    Names,
    aclose_clients,
    client_get,
    config_load,
    logins_get,
    start_gate,
    transport_error,
)

__all__ = [
    "ContentReset",
    "GPTalk",
    "Messages",
    "aclose_clients",
    "format_prompt",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-3.5-turbo"
# gptalk.net allowed 5 replies per free login (docs/gptalk-protocol.md, "The login token").
MAX_TOKEN_USES = 5
LOGIN_PATH = "/api/chatgpt/user/login"
TEXT_PATH = "/api/chatgpt/chatapi/text"
STREAM_PATH = "/api/chatgpt/chatapi/stream"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/117.0.0.0 Safari/537.36"
)
# How the transport errors name this upstream.
NAMES = Names(
    service="the GPTalk service",
    answer="the GPTalk answer",
    url="the GPTalk URL",
    requests="GPTalk requests",
)
INCOMPLETE = "The GPTalk answer was cut off before it was complete."


def format_prompt(messages: Messages) -> str:
    """The `content` of the text request: one message alone, else a transcript.

    Exactly one message gives its content; otherwise one "<Role>: <content>" line per
    message (role capitalised), joined by "\\n", then "\\nAssistant:".
    """
    if len(messages) == 1:
        return messages[0]["content"]
    lines = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
    return f"{lines}\nAssistant:"


def request_headers(timestamp: int) -> dict[str, str]:
    """The headers of every request of one call, as the original client sent them."""
    return {
        "authority": "gptalk.net",
        "accept": "*/*",
        "accept-language": "de-DE,de;q=0.9,en-DE;q=0.8,en;q=0.7,en-US;q=0.6,nl;q=0.5,"
        "zh-CN;q=0.4,zh-TW;q=0.3,zh;q=0.2",
        "content-type": "application/json",
        "origin": "https://gptalk.net",
        "sec-ch-ua": '"Google Chrome";v="117", "Not;A=Brand";v="8", "Chromium";v="117"',
        "sec-ch-ua-mobile": "?0",
        "sec-ch-ua-platform": '"Linux"',
        "sec-fetch-dest": "empty",
        "sec-fetch-mode": "cors",
        "sec-fetch-site": "same-origin",
        "user-agent": USER_AGENT,
        "x-auth-appid": "2229",
        "x-auth-openid": "",
        "x-auth-platform": "",
        "x-auth-timestamp": str(timestamp),
    }


_CONSTANT_HEADERS: httpx.Headers | None = None


def _call_headers(timestamp: int) -> httpx.Headers:
    """`request_headers(timestamp)` as httpx.Headers, from a copy normalized once."""
    global _CONSTANT_HEADERS
    if _CONSTANT_HEADERS is None:
        _CONSTANT_HEADERS = httpx.Headers(request_headers(timestamp))
    headers = _CONSTANT_HEADERS.copy()
    headers["x-auth-timestamp"] = str(timestamp)
    return headers


def text_body(*, prompt: str, model: str, timestamp: int) -> dict[str, Any]:
    """The JSON body of step 2; the key order is the original's."""
    return {
        "content": prompt,
        "accept": "stream",
        "from": 1,
        "model": model,
        "is_mobile": 0,
        "user_agent": USER_AGENT,
        "is_open_ctx": 0,
        "prompt": "",
        "roid": 111,
        "temperature": 0,
        "ctx_msg_count": 3,
        "created_at": timestamp,
    }


@dataclass(eq=False)
class _Login:
    """A login under way, and how many calls have reserved a use of its token."""

    task: asyncio.Future
    reserved: int = 1


class GPTalk:
    """The GPTalk provider: `create_async_generator` streams one reply as deltas.

    Called once per assistant reply (by the chat generation code, or a script). The
    login state is shared by every call in the process: `_auth` is the login `data`
    (None until the first login) and `used_times` counts the replies started with
    it. A call logs in when there is no token, it expired, or it was used 5 times;
    concurrent calls share logins without a sixth use (see `_auth_reserve`).

    The deltas are `str` suffixes of the reply, or a `ContentReset` whose value is
    the WHOLE new reply, meaning "replace everything so far with this": the
    service sends cumulative text, and when it rewrites earlier text a suffix
    would be wrong. Apply them with
    `text = str(delta) if isinstance(delta, ContentReset) else text + delta`.

    Errors are UpstreamError subclasses (chat/upstream/errors.py): AuthError,
    QuotaExceeded, UpstreamUnavailable (incl. StreamIncomplete), ProtocolError.
    Closing the generator early (aclose, task cancelled) closes the HTTP stream.
    """

    # The public site, kept for API compatibility; requests go to GPTALK_URL.
    url: ClassVar[str] = "https://gptalk.net"
    working: ClassVar[bool] = True
    supports_gpt_35_turbo: ClassVar[bool] = True
    _auth: ClassVar[dict[str, Any] | None] = None
    used_times: ClassVar[int] = 0

    @classmethod
    async def create_async_generator(
        cls,
        model: str | None = None,
        messages: Messages | None = None,
        proxy: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """Yield the reply to `messages` as deltas (see the class docstring).

        `model` falsy means "gpt-3.5-turbo"; `proxy` (else GPTALK_PROXY) is used for
        all three requests. Optional keyword arguments: `base_url` (else GPTALK_URL),
        `transport` ("aiohttp" or "httpx", else GPTALK_TRANSPORT), `read_timeout`,
        `connect_timeout` (seconds), `client` (an httpx.AsyncClient the caller owns;
        default: the shared pool). Other keyword arguments are ignored.
        """
        if not messages:
            raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
        config = config_load(
            base_url=kwargs.get("base_url"),
            proxy=proxy,
            transport=kwargs.get("transport"),
            read_timeout=kwargs.get("read_timeout"),
            connect_timeout=kwargs.get("connect_timeout"),
        )
        client = kwargs.get("client") or client_get(proxy=config.proxy, transport=config.transport)
        timestamp = int(time.time())  # once per call: x-auth-timestamp and created_at
        headers = _call_headers(timestamp)
        prompt = format_prompt(messages)
        body = text_body(prompt=prompt, model=model or DEFAULT_MODEL, timestamp=timestamp)
        # Answers that start together ask in turns (gate.py): this turn ends
        # when the stream is open.
        turn = await start_gate().turn()
        try:
            stream_token = await cls._stream_token_get(client, config, headers, body)
        except BaseException:
            turn.leave()
            raise

        deltas = DeltaStream()
        receiving = False
        try:
            url = f"{config.base_url}{STREAM_PATH}?{urlencode({'token': stream_token})}"
            request = request_build(client, "GET", url, headers=headers, timeout=config.timeout, fixed_url=False)
            try:
                response = await client.send(request, stream=True)
            finally:
                turn.leave()
            try:
                raise_for_status(response, "stream")
                receiving = True
                # httpx annotates its byte iterators as iterators; they are async generators.
                async with contextlib.aclosing(response_chunks(response)) as chunks:  # type: ignore[type-var]
                    async for chunk in chunks:
                        for delta in deltas.feed(chunk):
                            yield delta
                        if deltas.done:
                            break
                for delta in deltas.finish():
                    yield delta
            finally:
                await response.aclose()
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, config, receiving=receiving, names=NAMES) from exc
        if not deltas.done:
            raise StreamIncomplete(INCOMPLETE)

    # --- the login token -------------------------------------------------------

    @classmethod
    def _needs_login(cls) -> bool:
        auth = cls._auth
        if not auth or not isinstance(auth.get("token"), str):
            return True
        expires_at = auth.get("expires_at")
        if not _is_number(expires_at) or expires_at <= time.time():
            return True
        # ">= 5", not the original's "== 5": concurrent calls can step past 5.
        return cls.used_times >= MAX_TOKEN_USES

    @classmethod
    async def _auth_reserve(
        cls,
        client: httpx.AsyncClient,
        config: Config,
        headers: httpx.Headers,
        stale: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Reserve one use of a valid login token, logging in first if needed.

        Each use is counted before step 2 is sent, with no pause between the
        check and the count, so concurrent calls never take a sixth use of a
        token. When the token in hand is used up, a call joins a login under way
        that has a use to spare, or starts one: logins run side by side, so a
        hundred answers that start together wait for one login's round trip,
        not for twenty logins in a row. `stale` is a token the service just
        refused: it is dropped unless already replaced.
        """
        if stale is not None and cls._auth is stale:
            cls._auth = None
        while True:
            if not cls._needs_login():
                cls.used_times += 1
                return cls._auth  # type: ignore[return-value]
            logins: list[_Login] = logins_get()
            login = next((entry for entry in logins if entry.reserved < MAX_TOKEN_USES), None)
            started = login is None
            if login is None:
                login = _Login(asyncio.ensure_future(cls._login(client, config, headers)))
                logins.append(login)
                login.task.add_done_callback(functools.partial(cls._login_done, login, logins))
            else:
                login.reserved += 1
            try:
                return await asyncio.shield(login.task)
            except UpstreamError:
                if started:
                    raise
                # The login this call joined failed (its starter reports why): try again.

    @classmethod
    def _login_done(cls, login: _Login, logins: list[_Login], task: asyncio.Future) -> None:
        """A login ended: its token, with the uses reserved on it, becomes the one in hand."""
        logins.remove(login)
        if not task.cancelled() and task.exception() is None:
            cls._auth, cls.used_times = task.result(), login.reserved

    @classmethod
    async def _login(
        cls, client: httpx.AsyncClient, config: Config, headers: httpx.Headers
    ) -> dict[str, Any]:
        body = {"fingerprint": secrets.token_hex(16), "platform": "fingerprint"}
        response = await _post(client, config, LOGIN_PATH, body, headers)
        raise_for_status(response, "login")
        data = response_data(response, "login")
        if data is None:
            raise AuthError("The GPTalk service refused to log in: its answer held no token.")
        token = data.get("token") if isinstance(data, dict) else None
        expires_at = data.get("expires_at") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or not _is_number(expires_at):
            raise ProtocolError("The GPTalk service's login answer lacks a valid token or expiry.")
        logger.info("Logged in to GPTalk; the token expires at %s.", expires_at)
        return data

    # --- step 2: start a reply ---------------------------------------------------

    @classmethod
    async def _stream_token_get(
        cls,
        client: httpx.AsyncClient,
        config: Config,
        headers: httpx.Headers,
        body: dict[str, Any],
    ) -> str:
        """The one-use stream token; on a refused login token, log in and retry once."""
        stale: dict[str, Any] | None = None
        refused_status: int | None = None
        for _attempt in range(2):
            auth = await cls._auth_reserve(client, config, headers, stale)
            auth_headers = headers.copy()
            auth_headers["authorization"] = f"Bearer {auth['token']}"
            response = await _post(client, config, TEXT_PATH, body, auth_headers)
            refused_status = response.status_code if response.status_code in (401, 403) else None
            if refused_status is None:
                raise_for_status(response, "text")
                token = _stream_token_of(response_data(response, "text"))
                if token is not None:
                    return token
            stale = auth
            logger.warning(
                "GPTalk refused the login token (%s); logging in again.",
                f"HTTP {refused_status}" if refused_status else "no data in its answer",
            )
        if refused_status is not None:
            raise AuthError(
                "The GPTalk service refused our login twice.", status_code=refused_status
            )
        raise QuotaExceeded(
            "The GPTalk service gave no reply even after a fresh login: "
            "its free allowance is probably used up. Try again later."
        )


# --- helpers --------------------------------------------------------------------


async def _post(
    client: httpx.AsyncClient,
    config: Config,
    path: str,
    body: dict[str, Any],
    headers: httpx.Headers,
) -> httpx.Response:
    # json.dumps with its defaults, as aiohttp's json= did: ASCII-only, so even a
    # lone surrogate in a message can be sent.
    content = json.dumps(body).encode("ascii")
    try:
        request = request_build(
            client, "POST", config.base_url + path, headers=headers, timeout=config.timeout, content=content
        )
        return await client.send(request)
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc, config, receiving=False, names=NAMES) from exc


def raise_for_status(response: httpx.Response, step: str) -> None:
    """Raise the typed error for a non-2xx answer to the `step` request."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status == 429:
        raise QuotaExceeded(
            "The GPTalk service says too many requests were made. Try again later.",
            status_code=status,
        )
    if status >= 500:
        raise UpstreamUnavailable(
            f"The GPTalk service failed (HTTP {status}). Try again later.", status_code=status
        )
    if status in (401, 403):
        raise AuthError(
            f"The GPTalk service refused the {step} request (HTTP {status}).", status_code=status
        )
    raise ProtocolError(
        f"The GPTalk service answered the {step} request with HTTP {status}.", status_code=status
    )


def response_data(response: httpx.Response, step: str) -> Any:
    """The `data` member of a JSON object body (None when missing)."""
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise ProtocolError(
            f"The GPTalk service answered the {step} request with something that is not JSON."
        ) from exc
    if not isinstance(body, dict):
        raise ProtocolError(f"The GPTalk service's {step} answer is not a JSON object.")
    return body.get("data")


def _stream_token_of(data: Any) -> str | None:
    """data.token of step 2; None when missing (the free allowance is used up)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ProtocolError("The GPTalk service's text answer has a malformed `data`.")
    token = data.get("token")
    if token is None or token == "":
        return None
    if not isinstance(token, str):
        raise ProtocolError("The GPTalk service's text answer has a malformed stream token.")
    return token


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
