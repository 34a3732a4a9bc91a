"""Settings of one emulator process and of one scripted reply."""

from __future__ import annotations

from dataclasses import dataclass

# Faults a test can queue with POST /_emulator/next (see chat/emulator/control.py).
LOGIN_FAULTS = frozenset({"login_500", "login_no_data"})
TEXT_FAULTS = frozenset({"text_500", "text_429", "text_no_data"})
STREAM_FAULTS = frozenset({"stream_cut", "stream_malformed", "stream_stall", "stream_rewrite"})
# Only the OpenAI-compatible API (openai_api.py) answers these with an error; a GPTalk
# text request that takes one streams a reply that is cut off, as stream_cut does.
OPENAI_FAULTS = frozenset({"openai_401", "openai_404"})
FAULTS = LOGIN_FAULTS | TEXT_FAULTS | STREAM_FAULTS | OPENAI_FAULTS

# gptalk.net allowed 5 replies per free login (docs/gptalk-protocol.md, "The login token").
TEXT_QUOTA = 5


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Process-wide defaults, set once from the command line."""

    interval_ms: int = 20
    chunk_chars: int = 4
    token_ttl: int = 3600
    # An unused stream token is forgotten after this many seconds.
    stream_token_ttl: int = 600


@dataclass(frozen=True, slots=True)
class ReplySpec:
    """How one reply is produced; None fields fall back to the process defaults."""

    reply: str | None = None
    interval_ms: int | None = None
    chunk_chars: int | None = None
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Everything one stream needs, fixed when its stream token is issued."""

    reply: str
    interval_ms: int
    chunk_chars: int
    fault: str | None = None
