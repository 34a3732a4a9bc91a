"""`python manage.py gptalk_emulator`: serve the GPTalk emulator over HTTP."""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand


def _int_at_least(minimum: int):
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from exc
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


class Command(BaseCommand):
    help = "Serve the offline GPTalk API emulator (no database needed)."
    # Start fast, and without a database: no system or migration checks.
    requires_system_checks = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # By default it listens where the site looks for it when GPTALK_URL is unset.
        emulator = urlsplit(settings.GPTALK_EMULATOR_URL)
        parser.add_argument("--host", default=emulator.hostname)
        parser.add_argument("--port", type=_int_at_least(0), default=emulator.port)
        parser.add_argument(
            "--interval-ms", type=_int_at_least(0), default=20, help="pause between stream events (0 = none)"
        )
        parser.add_argument(
            "--chunk-chars", type=_int_at_least(1), default=4, help="characters added per event"
        )
        parser.add_argument(
            "--token-ttl", type=_int_at_least(1), default=3600, help="login token lifetime, seconds"
        )

    def handle(
        self, *args, host: str, port: int, interval_ms: int, chunk_chars: int, token_ttl: int, **options
    ):
        from chat.emulator.app import serve
        from chat.emulator.config import EmulatorConfig

        config = EmulatorConfig(interval_ms=interval_ms, chunk_chars=chunk_chars, token_ttl=token_ttl)
        self.stdout.write(
            f"GPTalk emulator on http://{host}:{port} "
            f"(interval {interval_ms} ms, {chunk_chars} chars/event, token TTL {token_ttl} s)"
        )
        self.stdout.flush()
        serve(host=host, port=port, config=config)
