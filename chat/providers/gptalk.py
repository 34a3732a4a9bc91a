"""The GPTalk API as a ChatProvider: a thin adapter around chat.upstream.gptalk.GPTalk."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from chat.upstream.gptalk import DEFAULT_MODEL, GPTalk
from chat.upstream.http import client_create, config_load

from .base import ChatProvider, Messages

CHECK_PROMPT = [{"role": "user", "content": "Say OK."}]


class GPTalkProvider(ChatProvider):
    """GPTalk (or any server speaking its protocol, like the built-in emulator).

    `base_url` "" means the GPTALK_URL setting. The login state of GPTalk is one
    per process (chat/upstream/gptalk.py), so every GPTalk provider shares it:
    two GPTalk providers at different URLs would keep logging each other out.
    """

    kind: ClassVar[str] = "gptalk"
    working: ClassVar[bool] = GPTalk.working

    def __init__(self, *, name: str = "GPTalk", base_url: str = "", default_model: str = "") -> None:
        super().__init__(name=name, default_model=default_model or DEFAULT_MODEL)
        self.base_url = base_url.rstrip("/")

    @property
    def cache_key(self) -> tuple[Any, ...]:
        return (*super().cache_key, self.base_url)

    def create_async_generator(
        self, *, model: str | None, messages: Messages, **kwargs: Any
    ) -> AsyncIterator[str]:
        return GPTalk.create_async_generator(
            model=model or self.default_model,
            messages=messages,
            base_url=self.base_url or None,
            **kwargs,
        )

    async def list_models(self, *, timeout: float | None = None) -> list[str]:
        # The GPTalk API has no model list: gptalk.net served the one model it was asked for.
        return [self.default_model]

    async def check(self, *, timeout: float | None = None) -> list[str]:
        """Ask for a short answer and stop at its first delta: log in, start, stream."""
        config = config_load(base_url=self.base_url or None, read_timeout=timeout, connect_timeout=timeout)
        async with client_create(proxy=config.proxy, transport=config.transport) as client:
            stream = self.create_async_generator(
                model=None,
                messages=CHECK_PROMPT,
                client=client,
                read_timeout=timeout,
                connect_timeout=timeout,
            )
            async with contextlib.aclosing(stream):
                async for _delta in stream:
                    break
        return await self.list_models()
