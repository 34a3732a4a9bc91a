"""chat/transport.py: Twisted's TCP connections send at once when nothing waits.

Run in a child process with Twisted's own reactor on real loopback sockets: the
patched write must deliver every byte in order, small writes without waiting
for the reactor, and writes larger than the kernel takes through Twisted's
queue (back-pressure) with nothing lost or reordered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from django.conf import settings

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from twisted.internet import protocol, reactor
    from chat import transport

    transport.install()
    transport.install()  # twice is harmless
    writers = []
    real_add_writer = reactor.addWriter
    reactor.addWriter = lambda fd: (writers.append(fd), real_add_writer(fd))

    SMALL = [b"frame %d;" % i for i in range(200)]
    BIG = bytes(range(256)) * 40_000  # ~10 MB: more than the kernel takes at once
    expected = b"".join(SMALL) + BIG + b"end"
    result = {}

    class Sender(protocol.Protocol):
        def connectionMade(self):
            for chunk in SMALL:
                self.transport.write(chunk)
            result["queued_after_small"] = writers.count(self.transport)
            self.transport.write(BIG)
            result["queued_after_big"] = writers.count(self.transport)
            self.transport.write(b"end")
            self.transport.loseConnection()

    class Receiver(protocol.Protocol):
        def connectionMade(self):
            self.data = []
        def dataReceived(self, data):
            self.data.append(data)
        def connectionLost(self, reason):
            got = b"".join(self.data)
            result["same"] = hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()
            result["length"] = [len(got), len(expected)]
            reactor.stop()

    factory = protocol.ServerFactory.forProtocol(Sender)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    protocol.ClientCreator(reactor, Receiver).connectTCP("127.0.0.1", port.getHost().port)
    reactor.callLater(20, reactor.stop)
    reactor.run()
    print(json.dumps(result))
    """
)


def test_writes_go_out_at_once_and_queue_only_what_the_kernel_refuses():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["queued_after_small"] == 0  # 200 small frames, not one reactor registration
    assert result["queued_after_big"] == 1  # the rest of 10 MB waits for the socket, in Twisted's queue
    assert result["length"][0] == result["length"][1]
    assert result["same"] is True


def test_autobahn_formats_its_per_frame_log_lines_without_colors():
    out = subprocess.run(
        [sys.executable, "-c", ("from chat import transport; transport.install(); "
                                "from autobahn.util import hltype; print(hltype(transport.install))")],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "<chat.transport.install>", out.stderr


# A real daphne serving one websocket whose app writes frames through
# text_frame_writer, interleaved with frames sent the ASGI way; it prints what
# each write returned once the client has closed.
DAPHNE_APP = textwrap.dedent(
    """
    import json, sys
    from daphne.server import Server
    from twisted.internet import reactor
    from chat import transport

    transport.install()
    TEXTS = [text.encode() for text in json.loads(sys.stdin.readline())]
    LIMIT = 300_000
    result = {}

    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        write = transport.text_frame_writer(send)
        result["before_accept"] = write([b"too early"])
        await send({"type": "websocket.accept"})
        result["writes"] = [write(TEXTS[:5]), write(TEXTS[5:])]
        await send({"type": "websocket.send", "text": "through daphne"})
        result["writes"].append(write([b"after"]))
        result["over_limit"] = write([b"x" * (LIMIT + 1)])
        await send({"type": "websocket.close", "code": 4000})
        result["after_close"] = write([b"too late"])
        await receive()
        print(json.dumps(result), flush=True)
        reactor.callLater(0, reactor.stop)

    Server(app, endpoints=[f"tcp:port={sys.argv[1]}:interface=127.0.0.1"], signal_handlers=False,
           websocket_max_message_size=LIMIT, websocket_max_frame_size=LIMIT,
           ready_callable=lambda: print("ready", flush=True)).run()
    """
)


def test_the_frame_writer_sends_what_autobahn_would_and_declines_outside_the_open_state():
    import asyncio

    import websockets

    from chat.transport import text_frame_writer
    from tests.fixtures.emulator import free_port

    # Each length encoding of RFC 6455 at its edges, non-ASCII text, an empty frame.
    texts = ["", "a", "é€😀 " * 10, "x" * 125, "y" * 126, "z" * 65535, "w" * 65536, '{"k":"\\u0000"}', "v" * 200_000]
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", DAPHNE_APP, str(port)], cwd=settings.BASE_DIR,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        child.stdin.write(json.dumps(texts) + "\n")
        child.stdin.close()
        assert child.stdout.readline().strip() == "ready", child.stderr.read()

        async def client() -> tuple[list, int | None]:
            got = []
            async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
                try:
                    while True:
                        got.append(await ws.recv())
                except websockets.ConnectionClosed:
                    return got, ws.close_code

        received, close_code = asyncio.run(asyncio.wait_for(client(), 30))
        child.wait(timeout=30)
        out, err = child.stdout.read(), child.stderr.read()
    finally:
        child.kill()
    assert received == [*texts, "through daphne", "after"]
    assert close_code == 4000
    assert json.loads(out.strip().splitlines()[-1]) == {
        "before_accept": False,  # still connecting: daphne accepts on its own path
        "writes": [True, True, True],
        "over_limit": False,  # autobahn refuses a message over the limit, as before
        "after_close": False,  # closing: autobahn drops it
    }, err

    async def not_daphne(message):
        pass

    assert text_frame_writer(not_daphne) is None
