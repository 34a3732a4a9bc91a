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
