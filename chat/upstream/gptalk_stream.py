"""The GPTalk answer stream (step 3 of docs/gptalk-protocol.md): lines to deltas.

Kept free of I/O so that any chunking of the byte stream can be tested directly.

The body is split at b"\\n" only. httpx's `aiter_lines` (like str.splitlines) also
splits at U+2028, U+0085, \\r and others that model text contains, which would cut a
JSON event in two. A b"\\n" byte never occurs inside a multi-byte UTF-8 sequence,
so splitting bytes first and decoding whole lines also handles characters that the
network split across chunks.
"""

from __future__ import annotations

import orjson

from .errors import ProtocolError

DATA_PREFIX = b"data: "
DONE_MARKER = b"[DONE]"
# One event carries the whole reply so far; far beyond any real reply, but bounded.
MAX_LINE_BYTES = 16 * 1024 * 1024


class ContentReset(str):
    """A delta that REPLACES the text received so far instead of extending it.

    Yielded by `GPTalk.create_async_generator` when the service sends a cumulative
    `content` that is not an extension of the previous one (it rewrote earlier
    text). Its value is the whole new content. Apply deltas like this:

        text = str(delta) if isinstance(delta, ContentReset) else text + delta

    A ContentReset may be empty (the service cleared the text); plain deltas never are.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ContentReset({str.__repr__(self)})"


def content_delta(previous: str, content: str) -> str:
    """What to yield when the cumulative content goes from `previous` to `content`.

    The new suffix when `content` extends `previous` ("" if unchanged), else a
    ContentReset holding all of `content`.
    """
    if content.startswith(previous):
        return content[len(previous) :]
    return ContentReset(content)


def parse_line(line: bytes) -> str | None:
    """The `content` of one event line (without its b"\\n"), or None to ignore it.

    Lines that do not start with b"data: " are ignored, as the original client did.
    The caller checks for the end marker first (see `is_done_line`).
    """
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.startswith(DATA_PREFIX):
        return None
    try:
        # orjson: each event repeats the whole reply so far, and decoding it is
        # a tenth of what relaying a long answer costs with json's decoder. It
        # also refuses what no database or socket could carry (a lone surrogate).
        event = orjson.loads(line[len(DATA_PREFIX) :])
    except ValueError as exc:  # orjson.JSONDecodeError, also for invalid UTF-8
        raise ProtocolError(
            "The GPTalk service sent a stream line that is not valid JSON."
        ) from exc
    content = event.get("content") if isinstance(event, dict) else None
    if not isinstance(content, str):
        raise ProtocolError("The GPTalk service sent a stream event without text content.")
    return content


def is_done_line(line: bytes) -> bool:
    """True for the end marker `data: [DONE]` (with or without a trailing \\r)."""
    return line.startswith(DATA_PREFIX + DONE_MARKER)


class DeltaStream:
    """Turns the body of step 3, fed chunk by chunk, into the deltas to yield.

    `feed(chunk)` returns the deltas completed by that chunk; `finish()` is called
    at the end of the body and handles a last line without b"\\n". After the end
    marker `done` is True and further input is ignored. Deltas are `str` suffixes,
    or a ContentReset when the content was rewritten; unchanged content yields
    nothing.
    """

    __slots__ = ("_pending", "_pending_size", "content", "done")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the start of a line whose b"\n" has not come
        self._pending_size = 0
        self.content = ""  # the whole reply so far
        self.done = False

    def feed(self, chunk: bytes) -> list[str]:
        if self.done or not chunk:
            return []
        if b"\n" not in chunk:
            self._keep(chunk)
            return []
        lines = chunk.split(b"\n")
        if self._pending:
            lines[0] = b"".join(self._pending) + lines[0]
            self._pending.clear()
            self._pending_size = 0
        tail = lines.pop()
        deltas = self._lines(lines)
        if tail and not self.done:
            self._keep(tail)
        return deltas

    def finish(self) -> list[str]:
        """The deltas of a last line that had no b"\\n"; check `done` afterwards."""
        if self.done or not self._pending:
            return []
        line = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return self._lines([line])

    def _keep(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size > MAX_LINE_BYTES:
            raise self._line_too_long()

    def _line_too_long(self) -> ProtocolError:
        """The error for a line past MAX_LINE_BYTES; a subclass words it for its upstream."""
        return ProtocolError("The GPTalk service sent a stream line that is far too long.")

    def _lines(self, lines: list[bytes]) -> list[str]:
        deltas: list[str] = []
        for line in lines:
            if is_done_line(line):
                self.done = True
                break
            content = parse_line(line)
            if content is None:
                continue
            delta = content_delta(self.content, content)
            self.content = content
            if delta or isinstance(delta, ContentReset):
                deltas.append(delta)
        return deltas
