"""The one interface every upstream implements, and the errors they raise.

A provider is an object built by chat.providers.registry from a Provider row or
from the settings. The answer code only ever calls:

    provider.create_async_generator(model=..., messages=[{"role", "content"}, ...])
        an async iterator of str deltas; a ContentReset delta replaces all the
        text so far (only GPTalk sends them); errors are UpstreamError subclasses
    await provider.list_models()   the model names it offers (may raise)
    await provider.check()         the model names, proving that it answers (raises if not)
    provider.name, .kind, .default_model ("" = the first it lists), .working

Providers sit on the upstream clients of chat/upstream/ and raise their typed
errors (chat/upstream/errors.py), whatever the upstream: UpstreamError and its
subclasses AuthError, QuotaExceeded, UpstreamUnavailable (StreamIncomplete),
ProtocolError (ModelNotFound).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from chat.upstream.http import Messages

__all__ = ["ChatProvider", "Messages"]


class ChatProvider(ABC):
    """One upstream that writes answers.

    Built for each answer (and each model listing) by the registry; cheap, and
    holding no connection: HTTP connections come from the shared pools of
    chat/upstream/http.py. Subclasses set `kind`.
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
        Raises UpstreamError subclasses only.
        """

    @abstractmethod
    async def list_models(self, *, timeout: float | None = None) -> list[str]:
        """The model names the upstream offers, in its order; raises UpstreamError.

        `timeout` (seconds) bounds connecting and each read, for listings that
        must not hold up a page.
        """

    async def check(self, *, timeout: float | None = None) -> list[str]:
        """Prove the upstream answers, and return its models; raises UpstreamError.

        Called by the admin's "Check" action. The default lists the models.
        """
        return await self.list_models(timeout=timeout)
