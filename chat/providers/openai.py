"""An OpenAI-compatible server as a ChatProvider: a thin adapter around chat.upstream.openai.

Ollama, vLLM, llama.cpp's server, LM Studio, OpenAI itself: the client
(chat/upstream/openai.py) speaks the protocol; this names the server, gives it
a default model and a cache key.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx

from chat.upstream.openai import OpenAIClient

from .base import ChatProvider, Messages


class OpenAIProvider(ChatProvider):
    """A server speaking OpenAI's chat-completions API, with streaming.

    `api_key` is sent as `Authorization: Bearer <key>` when set (Ollama and
    llama.cpp need none). `proxy`, `transport`, `connect_timeout` and
    `read_timeout` default to the shared upstream settings. `client` is an
    httpx.AsyncClient the caller owns (tests); by default answers use the shared
    pool and model listings a client of their own.
    """

    kind: ClassVar[str] = "openai"

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str = "",
        default_model: str = "",
        proxy: str | None = None,
        transport: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.strip():
            raise ValueError(f"The OpenAI-compatible provider {name!r} needs a base URL.")
        super().__init__(name=name, default_model=default_model)
        self.upstream = OpenAIClient(
            label=f"the provider “{name}”",
            base_url=base_url,
            api_key=api_key,
            proxy=proxy,
            transport=transport,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            client=client,
        )

    def __repr__(self) -> str:  # never the key
        return f"OpenAIProvider(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return self.upstream.base_url

    @property
    def api_key(self) -> str:
        return self.upstream.api_key

    @property
    def cache_key(self) -> tuple[Any, ...]:
        key_digest = hashlib.sha256(self.api_key.encode()).hexdigest()[:16]
        return (*super().cache_key, self.base_url, key_digest)

    def create_async_generator(
        self, *, model: str | None, messages: Messages, **kwargs: Any
    ) -> AsyncIterator[str]:
        """Stream the answer (see ChatProvider). Keyword arguments: `read_timeout`,
        `connect_timeout` (seconds) for this call, `usage` (a dict that receives
        the server's token count); others are ignored."""
        return self.upstream.completion_stream(
            model=model or self.default_model,
            messages=messages,
            read_timeout=kwargs.get("read_timeout"),
            connect_timeout=kwargs.get("connect_timeout"),
            usage=kwargs.get("usage"),
        )

    async def list_models(self, *, timeout: float | None = None) -> list[str]:
        return await self.upstream.list_models(timeout=timeout)
