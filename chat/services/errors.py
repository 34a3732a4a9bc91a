"""Typed errors of the GPTalk service module (chat/services/gptalk.py).

Everything that can go wrong while talking to the GPTalk API surfaces as one of
these, never as a KeyError, a JSONDecodeError or a raw httpx/aiohttp exception.
`message` (also `str(error)`) is a sentence a person can read; it never contains
a token.

    GPTalkError
    ├── AuthError            login failed, or the text endpoint refused us twice
    ├── QuotaExceeded        429, or still no `data` after a fresh login
    ├── UpstreamUnavailable  5xx, connect errors, timeouts, cut connections
    │   └── StreamIncomplete the answer ended without `data: [DONE]`
    └── ProtocolError        malformed lines, non-JSON bodies, missing fields
"""

from __future__ import annotations


class GPTalkError(Exception):
    """Base class of every error raised by the GPTalk service module."""

    default_message = "The GPTalk service failed."

    def __init__(self, message: str | None = None, *, status_code: int | None = None) -> None:
        self.message = message or self.default_message
        # The HTTP status that caused the error, when there was one.
        self.status_code = status_code
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class AuthError(GPTalkError):
    """The GPTalk service did not let us in (login failed, or refused twice)."""

    default_message = "The GPTalk service refused to log in."


class QuotaExceeded(GPTalkError):
    """The GPTalk service answered 429, or gave no reply even after a fresh login."""

    default_message = "The GPTalk service's free allowance is used up. Try again later."


class UpstreamUnavailable(GPTalkError):
    """The GPTalk service could not be reached, failed (5xx) or did not answer in time."""

    default_message = "The GPTalk service is unavailable. Try again later."


class StreamIncomplete(UpstreamUnavailable):
    """The answer stopped before its end marker (`data: [DONE]`): the text is partial."""

    default_message = "The GPTalk answer was cut off before it was complete."


class ProtocolError(GPTalkError):
    """The GPTalk service answered something that does not follow its protocol."""

    default_message = "The GPTalk service sent an answer this site does not understand."
