"""The reply stream: `data: <json>\\n` lines with cumulative `content`, then `data: [DONE]\\n`.

Each event is `{"content": <reply so far>, "ts": <time.time() right before sending>}`.
The JSON up to `"ts":` is precomputed per (reply, chunk size), so a benchmark with
1000 concurrent streams pays only a float format and a send per event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from functools import lru_cache

from starlette.types import Receive, Scope, Send

from .config import StreamPlan
from .state import EmulatorState

# Stream faults act after this many good events (fewer if the reply is shorter).
FAULT_AFTER_EVENTS = 3
REWRITE_PREFIX = "✎ Revised: "

DONE_LINE = b"data: [DONE]\n"
MALFORMED_LINE = b'data: {"content": this is not JSON\n'
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def rewritten(reply: str) -> str:
    """The final content of a `stream_rewrite` stream of `reply`."""
    return REWRITE_PREFIX + reply


@lru_cache(maxsize=256)
def event_prefixes(reply: str, chunk_chars: int) -> tuple[bytes, ...]:
    """`data: {"content":"<prefix>","ts":` for each cumulative prefix of `reply`."""
    return tuple(
        b'data: {"content":' + json.dumps(reply[:end], ensure_ascii=False).encode() + b',"ts":'
        for end in range(chunk_chars, len(reply) + chunk_chars, chunk_chars)
    )


def _good_events_before_fault(total: int) -> int:
    return min(FAULT_AFTER_EVENTS, max(1, total - 1), total)


def plan_lines(plan: StreamPlan) -> Iterator[bytes | None]:
    """The lines of one stream in order; an event prefix still lacks `ts`.

    A None item means "stall": send nothing more and keep the connection open.
    """
    prefixes = event_prefixes(plan.reply, plan.chunk_chars)
    if plan.fault is None:
        yield from prefixes
        yield DONE_LINE
        return
    good = _good_events_before_fault(len(prefixes))
    yield from prefixes[:good]
    if plan.fault == "stream_malformed":
        yield MALFORMED_LINE
    elif plan.fault == "stream_stall":
        yield None
    elif plan.fault == "stream_rewrite":
        # Continue from the same length in a text that does not extend what was sent.
        revised = event_prefixes(rewritten(plan.reply), plan.chunk_chars)
        yield from revised[good:]
        yield DONE_LINE
    # stream_cut (and the end of stream_malformed): the body ends without [DONE].


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream:
    """The ASGI response of GET /api/chatgpt/chatapi/stream for one stream token.

    Called by Starlette once the token is accepted. A receive() watcher ends the
    stream as soon as uvicorn reports http.disconnect: uvicorn's send() silently
    drops writes to a closed connection, so without it a paced or stalled stream
    would outlive its client and `active_streams` would not drop.
    """

    def __init__(self, plan: StreamPlan, state: EmulatorState) -> None:
        self.plan = plan
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.state.active_streams += 1
        try:
            sender = asyncio.ensure_future(self._send_lines(send))
            watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
            try:
                await asyncio.wait((sender, watcher), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sender.cancel()
                watcher.cancel()
            if sender.done() and not sender.cancelled():
                sender.result()  # re-raise a bug in the sender instead of hiding it
        finally:
            self.state.active_streams -= 1

    async def _send_lines(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        pause = self.plan.interval_ms / 1000
        first = True
        for line in plan_lines(self.plan):
            if not first:
                await asyncio.sleep(pause)  # 0 still yields to the loop
            first = False
            if line is None:
                await asyncio.get_running_loop().create_future()  # stall until cancelled
                return
            if line.endswith(b'"ts":'):
                line += f"{time.time()!r}}}\n".encode()
            await send({"type": "http.response.body", "body": line, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
