"""Typed errors of the upstream clients (GPTalk, OpenAI-compatible servers).

Everything that can go wrong while talking to an upstream surfaces as one of
these, never as a KeyError, a JSONDecodeError or a raw httpx/aiohttp exception.
Each client words the message for its own upstream ("The GPTalk service ...",
"The provider “Ollama” ..."). `message` (also `str(error)`) is a sentence a
person can read; it never contains a token or a key.

    UpstreamError
    ├── AuthError            the login or the key was refused (401/403)
    ├── QuotaExceeded        429, or the free allowance is used up
    ├── UpstreamUnavailable  5xx, connect errors, timeouts, cut connections
    │   └── StreamIncomplete the answer ended before its end marker
    └── ProtocolError        malformed lines, non-JSON bodies, missing fields
        └── ModelNotFound    the upstream has no such model (an OpenAI-compatible 404)

The default messages are only a fallback: the clients always pass their own.
"""

from __future__ import annotations


class UpstreamError(Exception):
    """Base class of every error raised by an upstream client."""

    default_message = "The upstream failed."

    def __init__(self, message: str | None = None, *, status_code: int | None = None) -> None:
        self.message = message or self.default_message
        # The HTTP status that caused the error, when there was one.
        self.status_code = status_code
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class AuthError(UpstreamError):
    """The upstream did not let us in (login or key refused)."""

    default_message = "The upstream refused to let us in."


class QuotaExceeded(UpstreamError):
    """The upstream answered 429, or its allowance is used up."""

    default_message = "The upstream's allowance is used up. Try again later."


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached, failed (5xx) or did not answer in time."""

    default_message = "The upstream is unavailable. Try again later."


class StreamIncomplete(UpstreamUnavailable):
    """The answer stopped before its end marker: the text is partial."""

    default_message = "The answer was cut off before it was complete."


class ProtocolError(UpstreamError):
    """The upstream answered something that does not follow its protocol."""

    default_message = "The upstream sent an answer this site does not understand."


class ModelNotFound(ProtocolError):
    """The upstream says it has no such model (an OpenAI-compatible 404)."""

    default_message = "The provider has no such model."
