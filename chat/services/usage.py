"""What an answer used: the size of its prompt and of its text, in characters and tokens.

Tokens are the upstream's own count when it reports one (OpenAI-compatible
servers send `usage` at the end of a stream asked for with
`stream_options.include_usage`). Otherwise, and for answers that did not end
normally (stopped, failed: no usage is reported), they are estimated from the
characters and marked as estimated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The usual rule of thumb for English text with GPT-style tokenizers.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Usage:
    prompt_chars: int | None
    answer_chars: int
    prompt_tokens: int | None
    answer_tokens: int
    tokens_estimated: bool

    def as_fields(self) -> dict[str, Any]:
        return {
            "prompt_chars": self.prompt_chars,
            "answer_chars": self.answer_chars,
            "prompt_tokens": self.prompt_tokens,
            "answer_tokens": self.answer_tokens,
            "tokens_estimated": self.tokens_estimated,
        }


def tokens_estimate(*, chars: int) -> int:
    """About how many tokens `chars` characters make (rounded up)."""
    return -(-chars // CHARS_PER_TOKEN)


def _reported(usage: Mapping[str, Any] | None, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, Mapping) else None
    # bool is an int: a server sending `true` has not counted anything.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def usage_measure(
    *, prompt_chars: int | None, answer: str, reported: Mapping[str, Any] | None
) -> Usage:
    """The usage of one answer from what the generation knows at its end.

    `reported` is the upstream's `usage` object, or None; it is used only when it
    counts both sides (a half-reported usage is not mixed with an estimate).
    """
    answer_chars = len(answer)
    prompt_tokens = _reported(reported, "prompt_tokens")
    answer_tokens = _reported(reported, "completion_tokens")
    if prompt_tokens is not None and answer_tokens is not None:
        return Usage(prompt_chars, answer_chars, prompt_tokens, answer_tokens, False)
    return Usage(
        prompt_chars=prompt_chars,
        answer_chars=answer_chars,
        prompt_tokens=None if prompt_chars is None else tokens_estimate(chars=prompt_chars),
        answer_tokens=tokens_estimate(chars=answer_chars),
        tokens_estimated=True,
    )
