"""Answers that start together ask the upstream in turns, first come first served.

A hundred people pressing Send in the same instant give one process a hundred
answers to start, and starting one is a chain of small upstream requests
(GPTalk: a login shared by five answers, the text request, the stream). Left
to themselves, the hundred chains advance side by side: every answer's first
request goes out, then every answer's second, and so on, and the event loop
works through all hundred at each step, so the median person waits for nearly
the whole burst before the first token. With a few turns at a time, the
answers that came first finish asking first while the rest wait without
costing anything, and the median first token comes much sooner
(docs/performance.md, "Fifth pass").

A turn lasts from an answer's first upstream request until its stream is open
(the response headers), but never longer than `hold` seconds: an upstream
that is slow to answer (a remote service, a model that thinks before its
headers) must not make the gate a queue. Past `hold` the next answer goes
ahead anyway, so at worst the gate lets `slots / hold` answers a second start
asking, about what one process can start anyway.
"""

from __future__ import annotations

import asyncio
from collections import deque

# Ten turns of at most 10 ms: up to a thousand answers a second begin asking
# even when the upstream is slow, about the rate at which one process can
# make their requests at all (~1 ms of CPU an answer, docs/performance.md).
START_SLOTS = 10
START_HOLD_S = 0.010


class Turn:
    """One answer's turn; `leave()` ends it (again: nothing), as its hold does."""

    __slots__ = ("gate", "handle")

    def __init__(self, gate: StartGate) -> None:
        self.gate: StartGate | None = gate
        self.handle = asyncio.get_running_loop().call_later(gate.hold, self.leave)

    def leave(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            self.handle.cancel()
            gate._pass_on()


class StartGate:
    """At most `slots` turns at once; the others wait in the order they came."""

    def __init__(self, slots: int = START_SLOTS, hold: float = START_HOLD_S) -> None:
        if slots < 1 or hold <= 0:
            raise ValueError("a start gate needs at least one slot and a positive hold")
        self.slots, self.hold = slots, hold
        self.free = slots
        self.waiting: deque[asyncio.Future] = deque()

    async def turn(self) -> Turn:
        """Wait for a turn (at once when a slot is free and nobody waits)."""
        if self.free and not self.waiting:
            self.free -= 1
            return Turn(self)
        ticket = asyncio.get_running_loop().create_future()
        self.waiting.append(ticket)
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self._pass_on()  # handed the slot just as it was cancelled
            raise
        return Turn(self)

    def _pass_on(self) -> None:
        """A turn ended: its slot goes to the first who still waits, else is free."""
        while self.waiting:
            ticket = self.waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self.free += 1
