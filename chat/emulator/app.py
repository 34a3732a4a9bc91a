"""The emulator's ASGI app and the uvicorn runner used by `manage.py gptalk_emulator`."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from .api import GPTalkAPI
from .config import EmulatorConfig
from .control import ControlAPI
from .openai_api import OpenAIAPI
from .state import EmulatorState


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """A fresh emulator; its state is at `app.state.emulator`."""
    state = EmulatorState(config or EmulatorConfig())
    api = GPTalkAPI(state)
    control = ControlAPI(state)
    openai = OpenAIAPI(state)
    app = Starlette(
        routes=[
            Route("/api/chatgpt/user/login", api.login, methods=["POST"]),
            Route("/api/chatgpt/chatapi/text", api.text, methods=["POST"]),
            Route("/api/chatgpt/chatapi/stream", api.stream, methods=["GET"]),
            Route("/v1/models", openai.models, methods=["GET"]),
            Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
            Route("/_emulator/next", control.next, methods=["POST"]),
            Route("/_emulator/stats", control.stats, methods=["GET"]),
            Route("/_emulator/reset", control.reset, methods=["POST"]),
            Route("/_emulator/health", control.health, methods=["GET"]),
        ]
    )
    app.state.emulator = state
    return app


def serve(*, host: str, port: int, config: EmulatorConfig) -> None:
    """Run the emulator until SIGINT/SIGTERM; quiet below warnings, no access log."""
    server_config = uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        backlog=4096,
        # A stalled stream never ends by itself: do not wait long for it at shutdown.
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(server_config).run()
