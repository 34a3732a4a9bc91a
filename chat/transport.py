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

`text_frame_writer()` goes one step further for the frames the hub sends
(already UTF-8 JSON, from orjson):
daphne's reply handler, its websocket protocol and autobahn's `sendMessage`,
`sendFrame` and `sendData` check, count, log and wrap each frame in six
calls before it reaches the transport, about a third of what a frame costs
above the socket's own `send`. The writer makes the same unmasked,
uncompressed text frames itself and writes a socket's frames of one loop
tick in one `write()`, only while the connection is in the plain state
where autobahn would do exactly that (open, nothing queued, no compression,
fragmentation, masking, frame logging or timing); in any other state it
declines and the caller sends through daphne, so closing, refusals and
errors behave as they always did.

`install()` is called by `manage.py serve` in each daphne process.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import autobahn.util
from autobahn.websocket.protocol import WebSocketProtocol
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


# A text frame's first byte (FIN, opcode 1), then the length as RFC 6455 5.2 encodes it.
_SHORT_HEADERS = [bytes((0x81, n)) for n in range(126)]
_OPEN = WebSocketProtocol.STATE_OPEN


def _text_frame_header(length: int) -> bytes:
    if length < 126:
        return _SHORT_HEADERS[length]
    if length <= 0xFFFF:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


def text_frame_writer(send) -> Callable[[list[bytes]], bool] | None:
    """`write(payloads)` for the websocket behind daphne's ASGI `send`, or None
    when `send` is not daphne's (a test communicator, another server).

    `write` sends the UTF-8 payloads as text frames in one write and returns
    True, or returns False having sent nothing when the connection is not in
    the plain open state; then the caller sends each through `send`."""
    # Not imported here: importing daphne.server installs Twisted's reactor.
    server = sys.modules.get("daphne.server")
    if not (
        server is not None
        and isinstance(send, functools.partial)
        and getattr(send.func, "__func__", None) is server.Server.handle_reply
        and len(send.args) == 1
        and isinstance(send.args[0], WebSocketProtocol)
    ):
        return None
    connections = send.func.__self__.connections
    protocol = send.args[0]
    plain: bool | None = None  # what the handshake settled: known once the socket is open

    def write(payloads: list[bytes]) -> bool:
        nonlocal plain
        if protocol.state != _OPEN or protocol.send_queue:
            return False
        details = connections.get(protocol)
        if details is None or details.get("disconnected"):
            return False
        if plain is None:
            plain = not (
                protocol._perMessageCompress is not None
                or protocol.maskServerFrames
                or protocol.autoFragmentSize
                or protocol.logFrames
                or protocol.logOctets
                or protocol.trackedTimings
            )
        if not plain:
            return False
        limit = protocol.maxMessagePayloadSize
        parts = []
        payload_octets = 0
        for payload in payloads:
            length = len(payload)
            if 0 < limit < length:
                return False  # autobahn refuses it, as it always did
            parts.append(_text_frame_header(length))
            parts.append(payload)
            payload_octets += length
        data = b"".join(parts)
        protocol.transport.write(data)
        count = len(payloads)
        stats = protocol.trafficStats
        stats.outgoingWebSocketMessages += count
        stats.outgoingWebSocketFrames += count
        stats.outgoingOctetsAppLevel += payload_octets
        stats.outgoingOctetsWebSocketLevel += payload_octets
        stats.outgoingOctetsWireLevel += len(data)
        return True

    return write
