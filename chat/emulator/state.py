"""In-memory state of one emulator process: tokens, the scripted queue, counts.

Everything runs on one event loop and no method awaits, so no locking is needed.
Tokens are never logged.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum

from .config import LOGIN_FAULTS, TEXT_QUOTA, EmulatorConfig, ReplySpec, StreamPlan
from .replies import default_reply

# Expired tokens are swept once this many have been issued since the last sweep.
_SWEEP_EVERY = 1024
# How many recent prompts stats() shows, for tests that check what was sent upstream.
LAST_PROMPTS = 20

COUNTERS = ("logins", "texts", "streams", "rejected", "faults")


class AuthResult(Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # missing, unknown or expired: HTTP 401
    USED_UP = "used_up"  # the login's free quota is gone: HTTP 200 without data


@dataclass(slots=True)
class _Login:
    expires_at: int
    uses: int = 0


class EmulatorState:
    """Owned by the ASGI app; the API and control endpoints read and change it."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.active_streams = 0  # a gauge, not a count: reset() leaves it alone
        self.reset()

    def reset(self) -> None:
        self._logins: dict[str, _Login] = {}
        self._streams: dict[str, tuple[float, StreamPlan]] = {}
        self._login_queue: deque[ReplySpec] = deque()
        self._text_queue: deque[ReplySpec] = deque()
        self._issued_since_sweep = 0
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.last_prompts: deque[str] = deque(maxlen=LAST_PROMPTS)

    # --- the scripted queue ---------------------------------------------------

    def enqueue(self, spec: ReplySpec) -> None:
        """Login faults wait for the next login, everything else for the next text request."""
        if spec.fault in LOGIN_FAULTS:
            self._login_queue.append(spec)
        else:
            self._text_queue.append(spec)

    def next_login_spec(self) -> ReplySpec | None:
        return self._login_queue.popleft() if self._login_queue else None

    def next_text_spec(self) -> ReplySpec | None:
        return self._text_queue.popleft() if self._text_queue else None

    # --- login tokens ---------------------------------------------------------

    def login_create(self) -> tuple[str, int]:
        """Issue a login token; it lives at least token_ttl seconds."""
        self._maybe_sweep()
        token = secrets.token_urlsafe(24)
        expires_at = math.ceil(time.time() + self.config.token_ttl)
        self._logins[token] = _Login(expires_at=expires_at)
        self.counts["logins"] += 1
        return token, expires_at

    def login_check(self, token: str | None) -> AuthResult:
        login = self._logins.get(token) if token else None
        if login is None or time.time() >= login.expires_at:
            return AuthResult.UNKNOWN
        if login.uses >= TEXT_QUOTA:
            return AuthResult.USED_UP
        return AuthResult.OK

    def login_use(self, token: str) -> None:
        self._logins[token].uses += 1

    # --- stream tokens --------------------------------------------------------

    def stream_create(self, plan: StreamPlan) -> str:
        self._maybe_sweep()
        token = secrets.token_urlsafe(24)
        self._streams[token] = (time.time() + self.config.stream_token_ttl, plan)
        self.counts["texts"] += 1
        return token

    def stream_take(self, token: str | None) -> StreamPlan | None:
        """The plan of a stream token, which is spent by this call; None if unknown."""
        entry = self._streams.pop(token, None) if token else None
        if entry is None or time.time() >= entry[0]:
            return None
        self.counts["streams"] += 1
        return entry[1]

    def plan_for(self, prompt: str, spec: ReplySpec | None) -> StreamPlan:
        spec = spec or ReplySpec()
        return StreamPlan(
            reply=default_reply(prompt) if spec.reply is None else spec.reply,
            interval_ms=self.config.interval_ms if spec.interval_ms is None else spec.interval_ms,
            chunk_chars=self.config.chunk_chars if spec.chunk_chars is None else spec.chunk_chars,
            fault=spec.fault,
        )

    # --- counts ---------------------------------------------------------------

    def stats(self) -> dict[str, int | list[str]]:
        return {
            **self.counts,
            "active_streams": self.active_streams,
            "queued": self.queued,
            "last_prompts": list(self.last_prompts),
        }

    @property
    def queued(self) -> int:
        return len(self._login_queue) + len(self._text_queue)

    def _maybe_sweep(self) -> None:
        self._issued_since_sweep += 1
        if self._issued_since_sweep < _SWEEP_EVERY:
            return
        self._issued_since_sweep = 0
        now = time.time()
        self._logins = {t: v for t, v in self._logins.items() if v.expires_at > now}
        self._streams = {t: v for t, v in self._streams.items() if v[0] > now}
