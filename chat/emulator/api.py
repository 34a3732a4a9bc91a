"""The three GPTalk endpoints, as docs/gptalk-protocol.md describes them.

Error bodies are JSON `{"code": ..., "message": ...}`. Tokens are never logged.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .state import AuthResult, EmulatorState
from .stream import EventStream


def error(code: int, message: str, *, status: int | None = None) -> JSONResponse:
    """A JSON error; `status` differs from `code` only for gptalk's 200-without-data answers."""
    return JSONResponse({"code": code, "message": message}, status_code=code if status is None else status)


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def prompt_of(request: Request) -> str | None:
    """The `content` of a text request body, or None if the body is not valid."""
    try:
        body = json.loads(await request.body())
    except ValueError:  # includes UnicodeDecodeError
        return None
    content = body.get("content") if isinstance(body, dict) else None
    return content if isinstance(content, str) else None


class GPTalkAPI:
    """Request handlers bound to one EmulatorState."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def login(self, request: Request) -> Response:
        """POST /api/chatgpt/user/login; the body (a fingerprint) is read and ignored."""
        await request.body()
        spec = self.state.next_login_spec()
        if spec is not None:
            self.state.counts["faults"] += 1
            if spec.fault == "login_500":
                return error(500, "emulated login failure")
            return error(0, "emulated: login answered without data", status=200)
        token, expires_at = self.state.login_create()
        return JSONResponse({"data": {"token": token, "expires_at": expires_at, "platform": "fingerprint"}})

    async def text(self, request: Request) -> Response:
        """POST /api/chatgpt/chatapi/text: spends one use of the login, issues a stream token."""
        token = bearer_token(request)
        auth = self.state.login_check(token)
        if auth is not AuthResult.OK:
            self.state.counts["rejected"] += 1
            if auth is AuthResult.USED_UP:
                # The real service answered 2xx without `data` here (docs/gptalk-protocol.md).
                return error(429, "free quota used up", status=200)
            return error(401, "missing, unknown or expired token")
        prompt = await prompt_of(request)
        if prompt is None:
            self.state.counts["rejected"] += 1
            return error(400, 'the body must be a JSON object with a string "content"')
        self.state.last_prompts.append(prompt)
        spec = self.state.next_text_spec()
        if spec is not None and spec.fault is not None and spec.fault.startswith("text_"):
            self.state.counts["faults"] += 1
            if spec.fault == "text_500":
                return error(500, "emulated text failure")
            if spec.fault == "text_429":
                return error(429, "emulated rate limit")
            return error(0, "emulated: text answered without data", status=200)
        self.state.login_use(token)
        stream_token = self.state.stream_create(self.state.plan_for(prompt, spec))
        return JSONResponse({"data": {"token": stream_token}})

    async def stream(self, request: Request) -> Response | EventStream:
        """GET /api/chatgpt/chatapi/stream?token=...: a stream token works once."""
        plan = self.state.stream_take(request.query_params.get("token"))
        if plan is None:
            self.state.counts["rejected"] += 1
            return error(404, "unknown or already used stream token")
        if plan.fault is not None:
            self.state.counts["faults"] += 1
        return EventStream(plan, self.state)
