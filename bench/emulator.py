"""The GPTalk emulator, unchanged, plus a send log for the relay benchmark.

    python bench/emulator.py --port 8765 --interval-ms 20 --chunk-chars 4

Every stream event the emulator sends carries `ts` (time.time() right before the
send). The site does not forward that to the browser, so to know when the
event behind a websocket delta left the upstream, this wrapper records, per
stream, the `ts` of each event it sends. It serves the same app as
`manage.py gptalk_emulator` (chat.emulator.app.serve, same uvicorn options) and
adds two routes:

- GET  /_bench/log        {"streams": [{"key", "chunk", "length", "asked", "ts": [...]}, ...]}
- POST /_bench/log/reset  forget the log

`key` is the sha1 hex digest of the reply's UTF-8 text: the benchmark client
learns the reply from the site's `done` frame and looks it up. Event j of a
stream (0-based) ends at character min((j+1)*chunk, length) of the reply.

The recording costs one rfind and one float() per event, in the emulator process.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

TS_MARK = b'"ts":'


def reply_key(reply: str) -> str:
    return hashlib.sha1(reply.encode("utf-8", "surrogatepass")).hexdigest()


def build_app(config):
    """The stock emulator app with a recording EventStream and the /_bench/ routes."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import chat.emulator.api as api_module
    import chat.emulator.app as app_module
    from chat.emulator.stream import EventStream

    streams: list[dict] = []

    class RecordingEventStream(EventStream):
        async def __call__(self, scope, receive, send):
            record = {
                "key": reply_key(self.plan.reply),
                "chunk": self.plan.chunk_chars,
                "length": len(self.plan.reply),
                "fault": self.plan.fault,
                "asked": time.time(),  # the stream request reached the app
                "ts": [],
            }
            streams.append(record)
            stamps = record["ts"]

            async def recording_send(message):
                if message["type"] == "http.response.body":
                    body = message.get("body", b"")
                    if body.endswith(b"}\n"):
                        at = body.rfind(TS_MARK)
                        if at != -1:
                            stamps.append(float(body[at + len(TS_MARK):-2]))
                await send(message)

            await super().__call__(scope, receive, recording_send)

    async def log(request: Request) -> JSONResponse:
        return JSONResponse({"streams": streams})

    async def log_reset(request: Request) -> JSONResponse:
        streams.clear()
        return JSONResponse({"ok": True})

    api_module.EventStream = RecordingEventStream
    app = app_module.create_app(config)
    app.router.routes.append(Route("/_bench/log", log, methods=["GET"]))
    app.router.routes.append(Route("/_bench/log/reset", log_reset, methods=["POST"]))
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--chunk-chars", type=int, default=4)
    parser.add_argument("--token-ttl", type=int, default=3600)
    args = parser.parse_args(argv)

    import chat.emulator.app as app_module
    from chat.emulator.config import EmulatorConfig

    config = EmulatorConfig(
        interval_ms=args.interval_ms, chunk_chars=args.chunk_chars, token_ttl=args.token_ttl
    )
    stock_create_app = app_module.create_app

    def create_app(cfg=None):
        app_module.create_app = stock_create_app  # build_app calls the stock one
        try:
            return build_app(cfg or config)
        finally:
            app_module.create_app = create_app

    # serve() builds its app with the module's create_app: same uvicorn options as the CLI.
    app_module.create_app = create_app
    app_module.serve(host=args.host, port=args.port, config=config)


if __name__ == "__main__":
    main()
