"""Conversation titles made from what was said: plain text, never Markdown.

A title shows in the tab, the header and the sidebar as plain text, so the
asterisks, backticks and link brackets of a Markdown question would show as
they are ("Show me **bold**"); they are taken out here, where titles are made.
"""

import re

TITLE_CHARS = 60
TITLE_WORDS = 7
# Openers that say nothing about the subject: a title starts after them.
_FILLER = (
    "please", "can you", "could you", "would you", "hi", "hello", "hey", "help me",
    "i want to", "i need to", "tell me", "explain", "пожалуйста", "привет",
)

_FENCE = re.compile(r"^\s*(```|~~~).*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_LINE_MARK = re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+|\d{1,9}[.)]\s+)+", re.MULTILINE)
# Emphasis and code marks: runs of * _ ~ ` that open or close a word. An
# underscore inside a word (snake_case) and a lone * between spaces (2 * 3) stay.
_EMPHASIS = re.compile(r"(?<![\w*_~`])[*_~`]+(?=\S)|(?<=\S)[*_~`]+(?![\w*_~`])")


def markdown_plain(text: str) -> str:
    """`text` with its Markdown marks taken out, on one line."""
    text = _FENCE.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _LINE_MARK.sub("", text)
    text = _EMPHASIS.sub("", text)
    return " ".join(text.split())


def _shorten(line: str) -> str:
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def title_from_text(text: str) -> str:
    """A short provisional title: the first message as plain text, trimmed."""
    return _shorten(markdown_plain(text.strip()))


def title_from_exchange(question: str, answer: str) -> str:
    """A short title for a conversation from its first question and answer.

    The question names the subject; the answer's first heading stands in when
    the question is too short to say anything (e.g. "hi").
    """
    text = markdown_plain(question)
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".!?…:;, ")
    lowered = sentence.lower()
    for filler in _FILLER:
        if lowered.startswith((filler + " ", filler + ",")):
            sentence = sentence[len(filler):].lstrip(" ,")
            lowered = sentence.lower()
    for tail in (" to me", " for me", " please"):
        if lowered.endswith(tail):
            sentence = sentence[: -len(tail)].rstrip(" ,")
    words = sentence.split()
    if len(words) < 2:
        heading = re.search(r"^#{1,3}\s+(.+)$", answer, flags=re.MULTILINE)
        if not heading:
            # "Hi there" says more than "There": keep the question as it was.
            return title_from_text(question)
        words = markdown_plain(heading.group(1)).split()
    if not words:
        return title_from_text(question)
    title = " ".join(words[:TITLE_WORDS])
    if len(words) > TITLE_WORDS:
        title = title.rstrip(",;:—-– ") + "…"
    title = title[:1].upper() + title[1:]
    return _shorten(title)
