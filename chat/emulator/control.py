"""The control API under /_emulator/: script the next replies, read counts, reset.

POST /_emulator/next takes a JSON object, every field optional (null = default):
`reply` (str), `interval_ms` (int, 0..60000), `chunk_chars` (int, 1..100000),
`fault` (one of config.FAULTS). Each post queues one spec (FIFO). A text request
that passes auth and validation consumes the next spec; login faults wait in their
own queue for the next login and take no other field.

GET /_emulator/stats counts since the last reset: `logins` (tokens issued),
`texts` (stream tokens issued), `streams` (streams started), `rejected` (401s,
quota used up, text body errors, bad stream tokens), `faults` (scripted faults
served); the gauges `active_streams` (open streams, untouched by reset) and
`queued` (specs waiting); and `last_prompts`, the `content` of the last 20 valid
text requests, oldest first. POST /_emulator/reset forgets queue, tokens and counts.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .config import FAULTS, LOGIN_FAULTS, ReplySpec
from .state import EmulatorState

_INT_RANGES = {"interval_ms": (0, 60_000), "chunk_chars": (1, 100_000)}
_FIELDS = {"reply", "fault", *_INT_RANGES}


class SpecError(ValueError):
    """Raised with a message for the client when a /_emulator/next body is invalid."""


def _check_int(name: str, value: Any) -> None:
    low, high = _INT_RANGES[name]
    # bool is an int subclass: reject `true` explicitly.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{name} must be an integer from {low} to {high}")


def _check_reply(value: Any) -> None:
    if not isinstance(value, str):
        raise SpecError("reply must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SpecError("reply must be valid Unicode (no lone surrogates)") from exc


def spec_from_json(raw: bytes) -> ReplySpec:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise SpecError("the body must be JSON") from exc
    if not isinstance(body, dict):
        raise SpecError("the body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise SpecError(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    fields = {name: value for name, value in body.items() if value is not None}
    for name in _INT_RANGES.keys() & fields.keys():
        _check_int(name, fields[name])
    if "reply" in fields:
        _check_reply(fields["reply"])
    fault = fields.get("fault")
    if fault is not None and (not isinstance(fault, str) or fault not in FAULTS):
        raise SpecError(f"fault must be one of: {', '.join(sorted(FAULTS))}")
    if fault in LOGIN_FAULTS and len(fields) > 1:
        raise SpecError("a login fault takes no other field")
    return ReplySpec(**fields)


class ControlAPI:
    """Handlers for tests and benchmarks; not part of the GPTalk protocol."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def next(self, request: Request) -> JSONResponse:
        try:
            spec = spec_from_json(await request.body())
        except SpecError as exc:
            return JSONResponse({"code": 400, "message": str(exc)}, status_code=400)
        self.state.enqueue(spec)
        return JSONResponse({"ok": True, "queued": self.state.queued})

    async def stats(self, request: Request) -> JSONResponse:
        return JSONResponse(self.state.stats())

    async def reset(self, request: Request) -> JSONResponse:
        self.state.reset()
        return JSONResponse({"ok": True})

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})
