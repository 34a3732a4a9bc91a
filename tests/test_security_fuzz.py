"""Hostile frames on the chat socket: property-based fuzzing (the cases it found are
checked one by one in tests/test_security_hostile.py).

Whatever a logged-in user sends, the consumer
- stays up: the socket stays open and still answers `conversation.open` of the
  user's own conversation with the right history;
- reveals nothing of another user: Bob's conversation, whose title and messages
  carry a canary string, and his answer streaming in the same process, never
  show up in any frame Alice gets, nor do Bob's ids as owned data;
- refuses a bad frame with exactly one `error` frame whose code is one of the
  codes docs/websocket-protocol.md lists (echoing the frame's `ref`), and a
  refused frame saves nothing;
- sends only frames that a websocket can carry: UTF-8 text (RFC 6455), so no
  lone surrogate, whatever the client put in its own strings.

The hypothesis tests drive one socket through many examples in the test's event
loop (pytest-asyncio runs async @given tests); a socket that died is replaced so
that shrinking still works. `expected()` (tests/fuzz/model.py) is a small model of
the protocol: what the documentation says the server must answer to a frame.
"""

from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.fixtures.emulator import REPO_ROOT
from tests.fuzz.session import Session, bob_is_untouched, check_frame, check_still_serves, settle
from tests.fuzz.strategies import FUZZ, frames_strategy, valid_shaped_frames
from tests.fuzz.world import KNOWN_CODES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]
pytest_plugins = ["tests.fixtures.services", "tests.fuzz.world", "tests.fuzz.session"]



def test_every_error_code_the_server_sends_is_documented():
    """A client can only handle the codes the protocol documents."""
    sent = set()
    for path in (REPO_ROOT / "chat").rglob("*.py"):
        sent |= set(re.findall(r'(?:ClientError|LimitExceeded)\(\s*"([a-z_]+)"', path.read_text()))
    assert {"bad_field", "not_found", "busy"} <= sent  # the scan sees the consumer's codes
    assert sent - KNOWN_CODES == set(), "error codes missing from docs/websocket-protocol.md"


async def short_answers(session: Session, queued: int = 12) -> None:
    """Keep short replies queued in the emulator, so that an accepted chat.send
    ends fast (one kept-alive client: a control call each is cheap)."""
    if session.control is None:
        session.control = httpx.AsyncClient(base_url=session.world.emulator.url, trust_env=False, timeout=5)
    stats = await session.control.get("/_emulator/stats")
    for _ in range(max(queued - stats.json()["queued"], 0)):
        response = await session.control.post(
            "/_emulator/next", json={"reply": "Short answer.", "interval_ms": 0, "chunk_chars": 4}
        )
        response.raise_for_status()


async def run_example(session: Session, items) -> None:
    await session.ensure()
    await short_answers(session)
    for text, data in items:
        await check_frame(session, text, data)
    await settle(session.world)
    await check_still_serves(session)
    await bob_is_untouched(session.world)
    session.clean = True




@FUZZ
@given(data=st.data())
async def test_fuzzed_frames_v1(v1, data):
    await run_example(v1, data.draw(v1.strategy("frames", frames_strategy), label="frames"))


@FUZZ
@given(data=st.data())
async def test_fuzzed_frames_v2(v2, data):
    await run_example(v2, data.draw(v2.strategy("frames", frames_strategy), label="frames"))


@hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_fuzzed_valid_shaped_frames_never_touch_bob(v1, data):
    """Every command with ids drawn from Alice's, Bob's and random ones."""
    frames = v1.strategy("valid", lambda w: st.lists(valid_shaped_frames(w), min_size=1, max_size=15))
    items = data.draw(frames, label="frames")
    await run_example(v1, [(text, None) for text in items])

