"""The one interface every upstream implements, and the errors they raise (issue 8).

A provider is an object built by chat.providers.registry from a Provider row or
from the environment. The answer code only ever calls:

    provider.create_async_generator(model=..., messages=[{"role", "content"}, ...])
        an async iterator of str deltas; a ContentReset delta replaces all the
        text so far (only GPTalk sends them); errors are ProviderError subclasses
    await provider.list_models()   the model names it offers (may raise)
    await provider.check()         the model names, proving that it answers (raises if not)
    provider.name, .kind, .default_model ("" = the first it lists), .working

Errors are the typed errors of chat/services/errors.py, whatever the upstream:

    ProviderError (= GPTalkError, so existing `except GPTalkError` keeps working)
    ├── AuthError            the key or login was refused (401/403)
    ├── QuotaExceeded        429, or the free allowance is used up
    ├── UpstreamUnavailable  5xx, connect errors, timeouts, cut connections
    │   └── StreamIncomplete the answer ended before its end marker
    └── ProtocolError        an answer this site does not understand
        └── ModelNotFound    the upstream has no such model (404)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

from chat.services.errors import (
    AuthError,
    GPTalkError,
    ProtocolError,
    QuotaExceeded,
    StreamIncomplete,
    UpstreamUnavailable,
)
from chat.services.gptalk_stream import ContentReset

__all__ = [
    "AuthError",
    "ChatProvider",
    "ContentReset",
    "Messages",
    "ModelNotFound",
    "ProtocolError",
    "ProviderError",
    "QuotaExceeded",
    "StreamIncomplete",
    "UpstreamUnavailable",
]

Messages = Sequence[Mapping[str, str]]

# The errors were named after the first upstream; they are every provider's errors.
ProviderError = GPTalkError


class ModelNotFound(ProtocolError):
    """The upstream says it has no such model (an OpenAI-compatible 404)."""

    default_message = "The provider has no such model."


class ChatProvider(ABC):
    """One upstream that writes answers.

    Built for each answer (and each model listing) by the registry; cheap, and
    holding no connection: HTTP connections come from the shared pools of
    chat/services/gptalk_http.py. Subclasses set `kind`.
    """

    kind: ClassVar[str]
    # gpt4free's flag: False takes a provider out of every list without deleting it.
    working: ClassVar[bool] = True

    def __init__(self, *, name: str, default_model: str = "") -> None:
        self.name = name
        self.default_model = default_model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    @property
    def cache_key(self) -> tuple[Any, ...]:
        """What the model list depends on; a changed URL or key is another provider."""
        return (self.kind, self.name, self.default_model)

    @abstractmethod
    def create_async_generator(
        self, *, model: str | None, messages: Messages, **kwargs: Any
    ) -> AsyncIterator[str]:
        """Stream the answer to `messages` as str deltas.

        Called once per answer. `model` None or "" means `default_model`. Closing
        the iterator early (aclose, a cancelled task) closes the HTTP stream.
        Raises ProviderError subclasses only.
        """

    @abstractmethod
    async def list_models(self, *, timeout: float | None = None) -> list[str]:
        """The model names the upstream offers, in its order; raises ProviderError.

        `timeout` (seconds) bounds connecting and each read, for listings that
        must not hold up a page.
        """

    async def check(self, *, timeout: float | None = None) -> list[str]:
        """Prove the upstream answers, and return its models; raises ProviderError.

        Called by the admin's "Check" action. The default lists the models.
        """
        return await self.list_models(timeout=timeout)
