"""`python manage.py serve`: the whole product in one command (what `make run` calls).

Starts the site under daphne (HTTP and websockets). When GPTALK_URL is not set,
it also starts the built-in GPTalk emulator on 127.0.0.1:8765 (unless one is
already answering there), so chat works offline with no configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

EMULATOR_URL = "http://127.0.0.1:8765"


def emulator_healthy(url: str) -> bool:
    try:
        response = httpx.get(f"{url}/_emulator/health", timeout=0.5, trust_env=False)
        return response.status_code == 200 and response.json() == {"ok": True}
    except (httpx.HTTPError, ValueError):
        return False


class Command(BaseCommand):
    help = "Run the chat site under daphne, with the built-in GPTalk emulator unless GPTALK_URL is set."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        emulator = None
        if not os.environ.get("GPTALK_URL") and settings.GPTALK_URL == EMULATOR_URL:
            emulator = self.start_emulator()
        self.stdout.write(f"GPTalk Chat on http://{host}:{port}/  (upstream: {settings.GPTALK_URL})")
        self.stdout.flush()
        from daphne.cli import CommandLineInterface

        try:
            CommandLineInterface().run(
                [
                    "-b", host, "-p", str(port), "--proxy-headers",
                    "--websocket-max-message-size", str(settings.CHAT_WS_MAX_MESSAGE_BYTES),
                    "gptalk_site.asgi:application",
                ]
            )
        finally:
            if emulator is not None:
                emulator.terminate()
                emulator.wait(timeout=10)

    def start_emulator(self) -> subprocess.Popen | None:
        if emulator_healthy(EMULATOR_URL):
            self.stdout.write(f"Using the GPTalk emulator already running at {EMULATOR_URL}")
            return None
        process = subprocess.Popen(
            [sys.executable, "manage.py", "gptalk_emulator", "--host", "127.0.0.1", "--port", "8765"],
            cwd=settings.BASE_DIR,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if emulator_healthy(EMULATOR_URL):
                return process
            if process.poll() is not None:
                raise CommandError("The built-in GPTalk emulator failed to start (see above).")
            time.sleep(0.1)
        process.terminate()
        raise CommandError(f"The built-in GPTalk emulator did not answer at {EMULATOR_URL}.")
