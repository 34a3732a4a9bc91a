"""Twisted's TCP connections send at once when nothing is waiting to be sent.

Twisted's `write()` never sends: it queues the bytes, registers the socket for
writability with the reactor, sends on the next loop pass and unregisters
again. For a websocket frame every 20 ms on each of a hundred sockets that is
two epoll registrations, a reactor callback (wrapped in Twisted's logging
context) and the bookkeeping of `doWrite` per frame, around a third of what
sending a frame costs (docs/performance.md). asyncio's own transports try the
socket first; this does the same for Twisted's: when the connection has
nothing queued, `write()` sends directly, and only what the kernel does not
take (or an error) goes the usual way, so back-pressure, producers, half-close
and connection loss behave exactly as before.

autobahn also formats a debug line for every frame it sends, whether or not
debug logging is on, with its arguments colored by `click` when click is
installed (the emulator's uvicorn brings it): three `click.style` calls per
frame, a twentieth of the cost of a frame. `install()` turns the coloring off
(the lines would print the same words, uncolored).

`install()` is called by `manage.py serve` in each daphne process.
"""

from __future__ import annotations

import autobahn.util
from twisted.internet import tcp


def _write(self: tcp.Connection, data: bytes) -> None:
    if (
        not self.TLS
        and self.connected
        and not self.disconnecting
        and not self._writeDisconnected
        and not self._tempDataLen
        and len(self.dataBuffer) == self.offset
        and type(data) is bytes
        and data
    ):
        try:
            sent = self.socket.send(data)
        except OSError:  # nothing sent: Twisted's own path retries, or reports the loss
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    _queued_write(self, data)


_queued_write = tcp.Connection.write


def install() -> None:
    """Idempotent: patch `twisted.internet.tcp.Connection.write`, uncolor autobahn's log lines."""
    autobahn.util._HAS_CLICK = False
    if tcp.Connection.write is not _write:
        tcp.Connection.write = _write  # type: ignore[method-assign]
