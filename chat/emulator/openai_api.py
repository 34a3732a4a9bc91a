"""The OpenAI-compatible chat API of the emulator, served on the same port as GPTalk's.

What Ollama, vLLM, llama.cpp's server, LM Studio and OpenAI itself speak, reduced
to what a chat client needs:

- GET /v1/models: `{"object": "list", "data": [{"id", "object": "model", ...}]}`.
- POST /v1/chat/completions with `{"model", "messages", "stream"}`. With
  `"stream": true` the answer is server-sent events, each `data: <json>\\n\\n`:
  a first chunk with the role, then one chunk per piece of text with
  `choices[0].delta.content` (pieces of `chunk_chars`, `interval_ms` apart), a
  last chunk with `finish_reason: "stop"`, then `data: [DONE]`. Every chunk
  also carries `"ts"` (time.time() right before sending), as GPTalk events do.
  Without it, one `chat.completion` JSON object. With
  `"stream_options": {"include_usage": true}` a last chunk before [DONE] has
  empty `choices` and the `usage` (as OpenAI sends it); the whole answer always
  has its `usage`. Tokens are counted by `token_count` (words and punctuation
  marks): the emulator's own tokenizer, stable for tests.

The reply, its pacing and its faults come from the SAME /_emulator/next queue
as the GPTalk API (a request that passes validation takes the next spec), so a
test scripts both APIs alike:

    text_500 → HTTP 500          text_429 → HTTP 429       text_no_data → an empty answer
    openai_401 → HTTP 401        openai_404 → HTTP 404 "model not found"
    stream_cut / stream_malformed / stream_stall: after a few good chunks the body
    ends without [DONE], sends a line that is not JSON, or stops sending
    stream_rewrite: the OpenAI protocol cannot take back text, so the chunks
    simply continue with the rewritten reply (what a client sees is undefined)

A model outside EMULATOR_MODELS gets a 404 like OpenAI's. The bearer token is
optional and never checked (nor logged). Counts: an accepted request counts as a
`texts`, a streamed one also as a `streams`; refused ones as `rejected`; the
prompt (the messages as a "Role: content" transcript, like the GPTalk prompt)
goes to `last_prompts`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .config import ReplySpec, StreamPlan
from .state import EmulatorState
from .stream import EventStream, _good_events_before_fault, _wait_for_disconnect, rewritten

# What GET /v1/models lists; the first is what a client without a choice gets.
EMULATOR_MODELS = ("gpt-3.5-turbo", "gpt-4o-mini")
OWNER = "gptalk-emulator"
ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})

DONE_EVENT = b"data: [DONE]\n\n"
MALFORMED_EVENT = b'data: {"choices": this is not JSON\n\n'
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def openai_error(status: int, message: str, *, kind: str, code: str | None = None) -> JSONResponse:
    """An error body as OpenAI sends it."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
    )


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    return None


def transcript(messages: list[dict[str, str]]) -> str:
    """The prompt as the GPTalk client would send it (see chat.upstream.gptalk.format_prompt),
    so that the default reply quotes the last user line whichever API asked."""
    if len(messages) == 1:
        return messages[0]["content"]
    lines = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
    return f"{lines}\nAssistant:"


_TOKEN = re.compile(r"\w+|[^\w\s]")


def token_count(text: str) -> int:
    """The emulator's tokens: each word and each punctuation mark counts one."""
    return len(_TOKEN.findall(text))


def usage_of(messages: list[dict[str, str]], reply: str) -> dict[str, int]:
    """The `usage` object of an answer `reply` to `messages`."""
    prompt = sum(token_count(m["content"]) for m in messages)
    completion = token_count(reply)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def parse_request(raw: bytes) -> tuple[str, list[dict[str, str]], bool, bool] | str:
    """(model, messages, stream, include_usage) of a chat-completions body, or what is wrong with it."""
    try:
        body = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        return "the body must be JSON"
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    model, messages, stream = body.get("model"), body.get("messages"), body.get("stream", False)
    if not isinstance(model, str) or not model:
        return "`model` must be a non-empty string"
    if not isinstance(messages, list) or not messages:
        return "`messages` must be a non-empty array"
    cleaned = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        text = _text_of(message.get("content")) if isinstance(message, dict) else None
        if role not in ROLES or text is None:
            return "each message needs a known `role` and a text `content`"
        cleaned.append({"role": role, "content": text})
    if not isinstance(stream, bool):
        return "`stream` must be a boolean"
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return model, cleaned, stream, include_usage


# --- the streamed answer ------------------------------------------------------------


@lru_cache(maxsize=256)
def piece_literals(reply: str, chunk_chars: int) -> tuple[bytes, ...]:
    """The JSON string literal of each piece of `reply` (precomputed, as GPTalk events are)."""
    return tuple(
        json.dumps(reply[start : start + chunk_chars], ensure_ascii=False).encode()
        for start in range(0, len(reply), chunk_chars)
    )


def stream_lines(plan: StreamPlan) -> Iterator[bytes | None]:
    """The `content` literal of each chunk to send, in order, then DONE_EVENT.

    Also yields MALFORMED_EVENT as is; None means "stall": send nothing more.
    """
    pieces = piece_literals(plan.reply, plan.chunk_chars)
    if plan.fault is None:
        yield from pieces
        yield DONE_EVENT
        return
    good = _good_events_before_fault(len(pieces))
    yield from pieces[:good]
    if plan.fault == "stream_malformed":
        yield MALFORMED_EVENT
    elif plan.fault == "stream_stall":
        yield None
    elif plan.fault == "stream_rewrite":
        sent = sum(len(json.loads(p)) for p in pieces[:good])
        yield from piece_literals(rewritten(plan.reply)[sent:], plan.chunk_chars)
        yield DONE_EVENT
    # stream_cut (and the end of stream_malformed): the body ends without [DONE].


class CompletionEventStream(EventStream):
    """The SSE response of one streamed chat completion (what the client's
    chat.upstream.openai.CompletionParser reads).

    Inherits the disconnect watcher and the `active_streams` gauge of the GPTalk
    stream; only the bytes differ.
    """

    def __init__(
        self, plan: StreamPlan, state: EmulatorState, *, model: str, usage: dict[str, int] | None = None
    ) -> None:
        super().__init__(plan, state)
        self.usage = usage
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}  # fmt: skip
        # Every chunk is head + choices + ts; the head is the same for all of them.
        self.head = (
            b"data: " + json.dumps(head, separators=(",", ":"))[:-1].encode()
            + b',"choices":[{"index":0,'
        )  # fmt: skip

    def chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        return (
            self.head
            + b'"delta":' + delta + b',"finish_reason":' + finish
            + b'}],"ts":' + repr(time.time()).encode() + b"}\n\n"
        )  # fmt: skip

    async def _send_lines(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await self._body(send, self.chunk(b'{"role":"assistant","content":""}'))
        pause = self.plan.interval_ms / 1000
        for line in stream_lines(self.plan):
            if line is DONE_EVENT:
                await self._body(send, self.chunk(b"{}", b'"stop"') + self.usage_chunk() + DONE_EVENT)
                break
            await asyncio.sleep(pause)  # 0 still yields to the loop
            if line is None:
                await asyncio.get_running_loop().create_future()  # stall until cancelled
                return
            if line is MALFORMED_EVENT:
                await self._body(send, line)
                continue
            await self._body(send, self.chunk(b'{"content":' + line + b"}"))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def usage_chunk(self) -> bytes:
        """The usage-only chunk OpenAI sends last when asked to (b"" when not asked)."""
        if self.usage is None:
            return b""
        head = self.head.removesuffix(b'"choices":[{"index":0,')
        return head + b'"choices":[],"usage":' + json.dumps(self.usage).encode() + b"}\n\n"

    @staticmethod
    async def _body(send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": True})


class WholeAnswer:
    """The response of a chat completion without `stream`: one JSON object.

    The stream faults act on it too: stream_cut ends the body halfway,
    stream_malformed sends a body that is not JSON, stream_stall sends nothing
    at all (until the client goes away).
    """

    def __init__(self, plan: StreamPlan, *, model: str, messages: list[dict[str, str]]) -> None:
        self.plan = plan
        self.model = model
        self.messages = messages

    def body(self) -> bytes:
        text = self.plan.reply
        if self.plan.fault == "stream_rewrite":
            text = rewritten(text)
        return json.dumps(
            {
                "id": "chatcmpl-" + secrets.token_hex(12),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage_of(self.messages, text),
                "ts": time.time(),
            },
            ensure_ascii=False,
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fault = self.plan.fault
        if fault == "stream_stall":
            await _wait_for_disconnect(receive)
            return
        body = b'{"choices": this is not JSON' if fault == "stream_malformed" else self.body()
        if fault == "stream_cut":
            body = body[: len(body) // 2]
        # No content-length: the body is chunked, so a cut one still ends cleanly.
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class OpenAIAPI:
    """Request handlers of the OpenAI-compatible API, bound to the emulator's state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def models(self, request: Request) -> JSONResponse:
        """GET /v1/models."""
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": OWNER}
                    for name in EMULATOR_MODELS
                ],
            }
        )

    async def chat_completions(self, request: Request) -> Response | CompletionEventStream | WholeAnswer:
        """POST /v1/chat/completions."""
        parsed = parse_request(await request.body())
        if isinstance(parsed, str):
            self.state.counts["rejected"] += 1
            return openai_error(400, parsed, kind="invalid_request_error")
        model, messages, stream, include_usage = parsed
        if model not in EMULATOR_MODELS:
            self.state.counts["rejected"] += 1
            return model_not_found(model)
        prompt = transcript(messages)
        self.state.last_prompts.append(prompt)
        spec = self.state.next_text_spec()
        refusal = self._refusal(spec, model)
        if refusal is not None:
            return refusal
        plan = self.state.plan_for(prompt, spec)
        if spec is not None and spec.fault == "text_no_data":
            plan = StreamPlan(reply="", interval_ms=plan.interval_ms, chunk_chars=plan.chunk_chars)
        self.state.counts["texts"] += 1
        if plan.fault is not None:
            self.state.counts["faults"] += 1
        if not stream:
            return WholeAnswer(plan, model=model, messages=messages)
        self.state.counts["streams"] += 1
        reply = rewritten(plan.reply) if plan.fault == "stream_rewrite" else plan.reply
        usage = usage_of(messages, reply) if include_usage else None
        return CompletionEventStream(plan, self.state, model=model, usage=usage)

    def _refusal(self, spec: ReplySpec | None, model: str) -> Response | None:
        """The error answer a queued fault asks for, if it asks for one."""
        fault = spec.fault if spec is not None else None
        if fault == "text_no_data":
            self.state.counts["faults"] += 1
            return None
        responses = {
            "text_500": lambda: openai_error(500, "emulated server failure", kind="server_error"),
            "text_429": lambda: openai_error(
                429, "emulated rate limit", kind="rate_limit_exceeded", code="rate_limit_exceeded"
            ),
            "openai_401": lambda: openai_error(
                401, "emulated: invalid API key", kind="invalid_request_error", code="invalid_api_key"
            ),
            "openai_404": lambda: model_not_found(model),
        }
        if fault not in responses:
            return None
        self.state.counts["faults"] += 1
        return responses[fault]()


def model_not_found(model: str) -> JSONResponse:
    return openai_error(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        kind="invalid_request_error",
        code="model_not_found",
    )
