"""The emulator's default reply: deterministic per prompt, visibly Markdown.

The reply says where it comes from, quotes the last user line of the prompt and
uses paragraphs, a list, a fenced code block and a table, with some non-ASCII
text (em dash, «», emoji) so that rendering and Unicode paths get exercised.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

QUOTE_CHARS = 60

_TOPICS = (
    "Markdown rendering",
    "streaming deltas",
    "token rotation",
    "the stop button",
    "Unicode handling",
    "error handling",
)

_TEMPLATE = """\
Hello! This answer comes from the **local GPTalk emulator** — it runs offline, \
so no real model read your message.

You wrote: «{quote}»

The emulator is handy for checking {topic}. A real reply could contain:

- paragraphs like the two above;
- a bullet list like this one;
- a fenced code block and a table, below. ✨

```python
def reply(prompt: str) -> str:
    # The same prompt always gets the same answer.
    return "echo: " + prompt[:{quote_len}]
```

| Check | Value |
|---|---|
| Streaming | cumulative `content` |
| Words in your line | {words} |
| Prompt digest | `{digest}` |

Send the same text again and you will get exactly this reply — character for character.
"""


def last_user_line(prompt: str) -> str:
    """The text of the last "User: " line, or the last non-blank line of the prompt.

    Prompts come from format_prompt (docs/gptalk-protocol.md): a single message is sent
    as its bare content, several as "<Role>: <content>" lines.
    """
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("User: "):
            return line[len("User: ") :].strip()
    return lines[-1] if lines else ""


def quote_of(prompt: str) -> str:
    # A lone surrogate (JSON allows "\ud800") cannot be sent as UTF-8: replace it.
    line = last_user_line(prompt).encode("utf-8", "replace").decode("utf-8")
    if not line:
        return "(an empty message)"
    if len(line) > QUOTE_CHARS:
        return line[: QUOTE_CHARS - 1].rstrip() + "…"
    return line


@lru_cache(maxsize=1024)
def default_reply(prompt: str) -> str:
    """The reply to `prompt` (the text request's `content`) unless a test scripted one."""
    digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
    quote = quote_of(prompt)
    return _TEMPLATE.format(
        quote=quote,
        topic=_TOPICS[int(digest[:8], 16) % len(_TOPICS)],
        quote_len=len(quote),
        words=len(last_user_line(prompt).split()),
        digest=digest[:12],
    )
