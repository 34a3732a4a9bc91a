"""What a person does on the chat page, as functions the browser tests share."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
import time

from playwright.sync_api import Page, expect

CONVERSATION_URL = re.compile(r".*/c/\d+/$")

# For locator.evaluate: whether a <select> shows its chosen option whole (the
# text's width in the select's font, its padding and Chromium's ~16 px arrow
# within its box): a cut label is not an overflow the page's width shows.
LABEL_FITS = """el => {
  const style = getComputedStyle(el);
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const text = ctx.measureText(el.options[el.selectedIndex].text).width;
  return text + parseFloat(style.paddingLeft) + parseFloat(style.paddingRight) + 16 <= el.clientWidth;
}"""

# Twenty-four short paragraphs: long enough to act in the middle of the answer.
PARAGRAPHS = [
    f"Paragraph {i}: the heron waits by the water, patient and still, for the moment to strike."
    for i in range(1, 25)
] + ["THE END."]
LONG_REPLY = "\n\n".join(PARAGRAPHS)
# About 4 s at 20 ms per 12 characters: time to reload, cut or close mid-answer.
SLOW = {"interval_ms": 20, "chunk_chars": 12}

# A Markdown answer with a heading, a list, a table, code and math.
RICH = r"""## Backoff, briefly

Retry with **exponential backoff**; see [httpx](https://www.python-httpx.org/).

- idempotent requests only
- cap the delay

| attempt | delay |
|---:|---|
| 1 | 0.5 s |
| 2 | 1 s |

```python
def delay(attempt: int) -> float:
    return min(0.5 * 2 ** attempt, 10)
```

Euler: $e^{i\pi} + 1 = 0$, and a block:

$$\int_0^1 x^2\,dx = \frac{1}{3}$$
"""

CLIPBOARD = {"permissions": ["clipboard-read", "clipboard-write"]}


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.keyboard.press("Enter")


def answer(page: Page):
    return page.locator(".msg-assistant").last


def answer_chars_js(selector: str = ".markdown") -> str:
    return (
        "(() => { const all = document.querySelectorAll('.msg-assistant');"
        " const last = all[all.length - 1];"
        f" return last ? (last.querySelector('{selector}')?.textContent.length || 0) : 0; }})()"
    )


def wait_chars(page: Page, chars: int, *, timeout: int = 20_000) -> None:
    """Wait until the newest answer shows more than `chars` characters."""
    page.wait_for_function(f"() => {answer_chars_js()} > {chars}", timeout=timeout)


def wait_done(page: Page, *, timeout: int = 30_000) -> None:
    expect(answer(page)).to_have_attribute("aria-busy", "false", timeout=timeout)


def paragraphs(page: Page) -> list[str]:
    """The rendered paragraphs of the newest answer."""
    return answer(page).locator(".markdown p").all_inner_texts()


def expect_long_reply(page: Page) -> None:
    """The newest answer ended complete with exactly LONG_REPLY."""
    wait_done(page)
    status = answer(page).locator(".msg-status")
    expect(status).to_be_hidden()
    assert paragraphs(page) == PARAGRAPHS


def start_answer(page: Page, emulator, text: str, *, reply: str = LONG_REPLY, **spec) -> None:
    """Queue `reply` in the emulator, send `text` and wait until the answer streams."""
    emulator.next(reply=reply, **(spec or SLOW))
    send(page, text)
    page.wait_for_url(CONVERSATION_URL)
    expect(answer(page)).to_have_attribute("aria-busy", "true")


class NetworkCut:
    """A TCP proxy between the browser and daphne: `cut()` drops every open
    connection (what a flaky network does), and the next `refuse` websocket
    handshakes are closed unanswered, while the server keeps writing the answer;
    between `hold()` and `release()` websocket handshakes wait unanswered (a
    slow connection: the page stays "connecting").

    The page is loaded through `url`; cookies are per host, not per port.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.refuse = 0
        self.refused = 0
        self.handshakes: list[float] = []  # monotonic times of websocket handshakes
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.gate = threading.Event()
        self.gate.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            first = client.recv(65536)
        except OSError:
            first = b""
        if not first:
            client.close()
            return
        if first.startswith(b"GET /ws/"):
            with self.lock:
                self.handshakes.append(time.monotonic())
                refuse = self.refuse > 0
                if refuse:
                    self.refuse -= 1
                    self.refused += 1
            if refuse:
                client.close()
                return
            self.gate.wait(timeout=60)
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        with self.lock:
            self.open.update((client, upstream))
        upstream.sendall(first)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def cut(self, *, refuse_next: int = 0) -> None:
        with self.lock:
            self.refuse = refuse_next
            connections, self.open = self.open, set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.release()
        self.listener.close()
        self.cut()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for conn in (source, sink):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SocketProxy:
    """Sits between the page and the server (Playwright's websocket routing):
    cuts the socket or loses one delta."""

    def __init__(self, page: Page) -> None:
        self.route = None
        self.server = None
        self.drop_seq: int | None = None
        self.pieces = 0  # v2 bare-string deltas seen since the last answer started
        self.sent: list[dict] = []
        page.route_web_socket(re.compile(r".*/ws/chat/(\?.*)?$"), self.handle)

    def handle(self, ws) -> None:
        server = ws.connect_to_server()
        self.route, self.server = ws, server

        def to_page(message):
            frame = json.loads(message)
            if isinstance(frame, str):  # protocol v2: the next piece of the answer
                self.pieces += 1
                seq = self.pieces
            else:
                if frame.get("type") == "message" and frame["message"]["role"] == "assistant":
                    self.pieces = 0
                seq = frame.get("seq") if frame.get("type") == "delta" else None
            if seq is not None and seq == self.drop_seq:
                self.drop_seq = None
                return  # lost on the way
            ws.send(message)

        def to_server(message):
            self.sent.append(json.loads(message))
            server.send(message)

        server.on_message(to_page)
        ws.on_message(to_server)

    def cut(self) -> None:
        self.route.close(code=4000, reason="test cut")
        self.server.close()

    def opens(self) -> int:
        return sum(1 for f in self.sent if f.get("type") == "conversation.open")


def db(live_site) -> sqlite3.Connection:
    """The live site's SQLite database, for checking what was saved."""
    return sqlite3.connect(live_site.env["DATABASE_URL"].removeprefix("sqlite:///"), timeout=10)


def new_answer(page: Page, emulator, prompt: str, reply: str, **spec) -> None:
    """Script the emulator's reply, send `prompt` and wait until the answer is done."""
    emulator.next(reply=reply, **spec)
    send(page, prompt)
    page.wait_for_url(CONVERSATION_URL)
    wait_done(page)
