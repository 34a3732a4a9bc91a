"""Client of OpenAI-compatible chat completions (Ollama, vLLM, llama.cpp's server, LM Studio, OpenAI).

    POST {base_url}/chat/completions  {"model", "messages", "stream": true}
        → server-sent events `data: {json}` with `choices[0].delta.content`,
          ending with `data: [DONE]`
    GET  {base_url}/models            → {"data": [{"id": ...}, ...]}

`base_url` is what the OpenAI SDK calls OPENAI_BASE_URL: it ends in /v1
(`http://127.0.0.1:11434/v1` for Ollama). Connections, proxy, transport and
timeouts are the shared ones of http.py (the GPTALK_PROXY, GPTALK_TRANSPORT and
GPTALK_*_TIMEOUT settings, the shared pools); the byte stream is split into
lines by gptalk_stream.DeltaStream, at b"\\n" only. Every error message names
the server by its `label` (e.g. "the provider “Ollama”").
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .client import response_chunks
from .errors import (
    AuthError,
    ModelNotFound,
    ProtocolError,
    QuotaExceeded,
    StreamIncomplete,
    UpstreamError,
    UpstreamUnavailable,
)
from .gptalk_stream import DeltaStream
from .http import (
    TRANSPORT_ERRORS,
    Config,
    Messages,
    Names,
    client_create,
    client_get,
    config_load,
    start_gate,
    transport_error,
)

# How much of an upstream's own error text goes into a message a person reads.
DETAIL_CHARS = 300


class CompletionParser(DeltaStream):
    """Reads the body of a streamed chat completion, fed chunk by chunk, as deltas.

    (The emulator's CompletionEventStream writes such a body.) DeltaStream does
    the byte work (lines split at b"\\n", a line cut across chunks, the length
    bound); this reads OpenAI's events from the lines. Blank lines, `:` comments
    and `event:`/`id:` fields are skipped; `data:` works with or without the
    space. `done` is set by `data: [DONE]`; `finished` by a chunk with a
    `finish_reason`, which some servers send without the [DONE].

    A bad event sets `error` (and `done`) instead of raising, so that the deltas
    before it in the same chunk are still returned: the caller yields them, then
    raises `error`.
    """

    __slots__ = ("error", "finished", "label", "usage")

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.finished = False
        self.usage: dict | None = None  # the server's token count (`include_usage`)
        self.error: UpstreamError | None = None

    @property
    def complete(self) -> bool:
        return self.done or self.finished

    def _line_too_long(self) -> ProtocolError:
        return ProtocolError(f"{self.label} sent a stream line that is far too long.")

    def _lines(self, lines: list[bytes]) -> list[str]:
        deltas: list[str] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].removeprefix(b" ")
            if payload == b"[DONE]":
                self.done = True
                break
            try:
                text = self._event_text(payload)
            except UpstreamError as exc:
                self.error, self.done = exc, True
                break
            if text:
                self.content += text
                deltas.append(text)
        return deltas

    def _event_text(self, payload: bytes) -> str | None:
        try:
            event = json.loads(payload.decode("utf-8"))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise ProtocolError(f"{self.label} sent a stream event that is not valid JSON.") from exc
        if not isinstance(event, dict):
            raise ProtocolError(f"{self.label} sent a stream event that is not a JSON object.")
        if event.get("error") is not None:
            raise error_from_event(event["error"], self.label)
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        choices = event.get("choices")
        if not choices:  # a usage-only chunk
            return None
        choice = choices[0] if isinstance(choices, list) else None
        if not isinstance(choice, dict):
            choice = {}
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            raise ProtocolError(f"{self.label} sent a stream event without a `delta`.")
        if choice.get("finish_reason"):
            self.finished = True
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise ProtocolError(f"{self.label} sent a stream event whose text is not a string.")
        return content


class OpenAIClient:
    """One server speaking OpenAI's chat-completions API, with streaming.

    `label` names the server in every error message, mid-sentence ("the
    provider “Ollama”"). `api_key` is sent as `Authorization: Bearer <key>` when
    set (Ollama and llama.cpp need none). `proxy`, `transport`,
    `connect_timeout` and `read_timeout` default to the shared settings.
    `client` is an httpx.AsyncClient the caller owns (tests); by default answers
    use the shared pool and model listings a client of their own.
    """

    def __init__(
        self,
        *,
        label: str,
        base_url: str,
        api_key: str = "",
        proxy: str | None = None,
        transport: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.label = label
        self.base_url = base_url.strip().rstrip("/")
        self.api_key = api_key.strip()
        self.proxy = proxy
        self.transport = transport
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.client = client
        self.names = Names(
            service=label,
            answer=f"the answer of {label}",
            url=f"the URL of {label}",
            requests=f"requests to {label}",
        )

    def __repr__(self) -> str:  # never the key
        return f"OpenAIClient(label={self.label!r}, base_url={self.base_url!r})"

    @property
    def capitalized_label(self) -> str:
        return self.label[0].upper() + self.label[1:]

    async def completion_stream(
        self,
        *,
        model: str,
        messages: Messages,
        read_timeout: float | None = None,
        connect_timeout: float | None = None,
        usage: dict | None = None,
    ) -> AsyncIterator[str]:
        """Yield the answer to `messages` as str deltas; `model` "" means the first listed.

        `usage`, a dict of the caller's, receives the server's token count
        (prompt_tokens, completion_tokens) when it reports one at the end.
        Closing the iterator early (aclose, a cancelled task) closes the HTTP stream.
        """
        if not messages:
            raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
        config = self._config(read_timeout, connect_timeout)
        model = model or await self._first_model()
        body = {
            "model": model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": True,
            # The token count in a last chunk (OpenAI, vLLM, Ollama, llama.cpp send it).
            "stream_options": {"include_usage": True},
        }
        client = self.client or client_get(proxy=config.proxy, transport=config.transport)
        chunks = CompletionParser(self.capitalized_label)
        receiving = False
        # Answers that start together ask in turns (gate.py), until the stream is open.
        turn = await start_gate().turn()
        try:
            async with client.stream(
                "POST",
                config.base_url + "/chat/completions",
                content=json.dumps(body).encode("ascii"),
                headers=self._headers(accept="text/event-stream"),
                timeout=config.timeout,
            ) as response:
                turn.leave()
                if not response.is_success:
                    await response.aread()
                    raise self.status_error(response, model=model)
                receiving = True
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignored "stream": the whole answer at once.
                    await response.aread()
                    yield self._whole_answer(response, usage=usage)
                    return
                # httpx annotates its byte iterators as iterators; they are async generators.
                async with contextlib.aclosing(response_chunks(response)) as parts:  # type: ignore[type-var]
                    async for part in parts:
                        for delta in chunks.feed(part):
                            yield delta
                        if chunks.done:
                            break
                for delta in chunks.finish():
                    yield delta
                if chunks.error is not None:
                    raise chunks.error
                if usage is not None and chunks.usage:
                    usage.update(chunks.usage)
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, config, receiving=receiving, names=self.names) from exc
        finally:
            turn.leave()
        if not chunks.complete:
            raise StreamIncomplete(f"The answer of {self.label} was cut off before it was complete.")

    async def list_models(self, *, timeout: float | None = None) -> list[str]:
        """The model names the server lists, in its order; raises UpstreamError."""
        config = self._config(timeout, timeout)
        try:
            if self.client is not None:
                response = await self._get_models(self.client, config)
            else:
                async with client_create(proxy=config.proxy, transport=config.transport) as client:
                    response = await self._get_models(client, config)
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, config, receiving=False, names=self.names) from exc
        if not response.is_success:
            raise self.status_error(response, model=None)
        try:
            data = json.loads(response.content).get("data")
            names = [entry["id"] for entry in data]
        except (ValueError, AttributeError, TypeError, KeyError) as exc:
            raise ProtocolError(
                f"{self.capitalized_label}'s model list is not the OpenAI `{{\"data\": [{{\"id\"}}]}}`."
            ) from exc
        if not all(isinstance(name, str) and name for name in names):
            raise ProtocolError(f"{self.capitalized_label} listed a model without a name.")
        return names

    # --- HTTP answers as typed errors ---------------------------------------------

    def status_error(self, response: httpx.Response, *, model: str | None) -> UpstreamError:
        """The typed error of a non-2xx answer (the body has been read)."""
        status = response.status_code
        who = self.capitalized_label
        if status in (401, 403):
            # The upstream's own words may quote the key: never pass them on.
            return AuthError(f"{who} refused the API key (HTTP {status}).", status_code=status)
        if status == 429:
            return QuotaExceeded(
                f"{who} says too many requests were made, or the quota is used up. Try again later.",
                status_code=status,
            )
        if status >= 500:
            return UpstreamUnavailable(f"{who} failed (HTTP {status}). Try again later.", status_code=status)
        detail = error_detail(response)
        if status == 404 and model is not None and "model" in detail.lower():
            return ModelNotFound(f"{who} has no model “{model}”.", status_code=status)
        if status == 404:
            return ProtocolError(
                f"{who} has nothing at {response.request.url.path} (HTTP 404): "
                "its base URL should end in /v1.",
                status_code=status,
            )
        suffix = f": {detail}" if detail else "."
        return ProtocolError(f"{who} refused the request (HTTP {status}){suffix}", status_code=status)

    # --- helpers -------------------------------------------------------------------

    def _config(self, read_timeout: float | None = None, connect_timeout: float | None = None) -> Config:
        return config_load(
            base_url=self.base_url,
            proxy=self.proxy,
            transport=self.transport,
            read_timeout=read_timeout or self.read_timeout,
            connect_timeout=connect_timeout or self.connect_timeout,
        )

    def _headers(self, *, accept: str) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": accept}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    async def _get_models(self, client: httpx.AsyncClient, config: Config) -> httpx.Response:
        return await client.get(
            config.base_url + "/models",
            headers=self._headers(accept="application/json"),
            timeout=config.timeout,
        )

    async def _first_model(self) -> str:
        names = await self.list_models()
        if not names:
            raise ModelNotFound(f"{self.capitalized_label} offers no model.")
        return names[0]

    def _whole_answer(self, response: httpx.Response, *, usage: dict | None = None) -> str:
        try:
            body = json.loads(response.content)
            content = body["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError) as exc:
            raise ProtocolError(
                f"{self.capitalized_label} sent an answer this site does not understand."
            ) from exc
        if not isinstance(content, str):
            raise ProtocolError(f"{self.capitalized_label} sent an answer without text.")
        if usage is not None and isinstance(body.get("usage"), dict):
            usage.update(body["usage"])
        return content


def error_detail(response: httpx.Response) -> str:
    """The upstream's own short explanation of an error, if it gave one in JSON."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return ""
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, str):  # Ollama: {"error": "model 'x' not found"}
        text = error
    elif isinstance(error, dict):  # OpenAI: {"error": {"message"}}; vLLM: {"message"}
        text = error.get("message") or error.get("detail") or ""
    else:
        text = ""
    text = " ".join(str(text).split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def error_from_event(error: Any, label: str) -> UpstreamError:
    """The typed error of an `{"error": ...}` event sent in the middle of a stream."""
    detail = error.get("message") if isinstance(error, dict) else error
    detail = " ".join(str(detail or "").split())[:DETAIL_CHARS]
    code = error.get("code") if isinstance(error, dict) else None
    suffix = f": {detail}" if detail else "."
    if code in (429, "429", "rate_limit_exceeded", "insufficient_quota"):
        return QuotaExceeded(f"{label} stopped the answer{suffix}")
    return UpstreamUnavailable(f"{label} stopped the answer with an error{suffix}")
