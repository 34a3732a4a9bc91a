"""The start gate (chat/upstream/gate.py): answers that start together ask the
upstream in turns, first come first served, each turn ending when its stream
is open or its hold runs out. Unit tests of the gate, then both upstream
clients passing through it against the real emulator."""

from __future__ import annotations

import asyncio

import pytest

from chat.providers.openai import OpenAIProvider
from chat.upstream import http
from chat.upstream.errors import UpstreamError, UpstreamUnavailable
from chat.upstream.gate import START_HOLD_S, START_SLOTS, StartGate
from chat.upstream.gptalk import GPTalk
from tests.fixtures.emulator import free_port
from tests.test_gptalk_integration import (  # noqa: F401 - fixtures by name
    HANG,
    fresh_clients,
    transport,
)

LONG = 60.0  # a hold no test reaches: the turn must end by leaving


async def _take(gate: StartGate, name: str, order: list[str]):
    turn = await gate.turn()
    order.append(name)
    return turn


async def test_a_free_slot_is_a_turn_at_once_and_leaving_frees_it():
    gate = StartGate(2, hold=LONG)
    first, second = await gate.turn(), await gate.turn()
    assert gate.free == 0
    first.leave()
    first.leave()  # leaving twice frees one slot, once
    assert gate.free == 1
    second.leave()
    assert gate.free == 2


async def test_waiting_answers_get_their_turns_in_the_order_they_came():
    gate = StartGate(1, hold=LONG)
    order: list[str] = []
    holder = await gate.turn()
    waiters = [asyncio.create_task(_take(gate, name, order)) for name in "abc"]
    await asyncio.sleep(0)
    assert order == [] and len(gate.waiting) == 3
    holder.leave()
    turn_a = await waiters[0]
    await asyncio.sleep(0)
    assert order == ["a"]  # b and c still wait: a holds the one slot
    turn_a.leave()
    (await waiters[1]).leave()
    (await waiters[2]).leave()
    assert order == ["a", "b", "c"]
    assert gate.free == 1 and not gate.waiting


async def test_a_turn_that_never_ends_lets_the_next_go_after_its_hold():
    gate = StartGate(1, hold=0.05)
    stuck = await gate.turn()  # an upstream that has not answered yet
    loop = asyncio.get_running_loop()
    began = loop.time()
    nxt = await asyncio.wait_for(gate.turn(), HANG)
    assert loop.time() - began >= 0.04
    stuck.leave()  # its stream opens late: the slot is not freed a second time
    nxt.leave()
    assert gate.free == 1


@pytest.mark.parametrize(
    "cancelled",
    [
        "before its turn came",  # its ticket is cancelled: the slot skips it
        "just as its turn came",  # handed the slot before it ran again: it passes it on
    ],
)
async def test_a_waiter_cancelled_leaves_the_slot_to_the_next(cancelled):
    gate = StartGate(1, hold=LONG)
    holder = await gate.turn()
    order: list[str] = []
    gone = asyncio.create_task(_take(gate, "gone", order))
    nxt = asyncio.create_task(_take(gate, "next", order))
    await asyncio.sleep(0)
    if cancelled == "before its turn came":
        gone.cancel()
        holder.leave()
    else:
        holder.leave()
        gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    (await asyncio.wait_for(nxt, HANG)).leave()
    assert order == ["next"] and gate.free == 1 and not gate.waiting


@pytest.mark.parametrize(("slots", "hold"), [(0, 1.0), (1, 0), (2, -1.0)])
def test_a_gate_needs_a_slot_and_a_positive_hold(slots, hold):
    with pytest.raises(ValueError, match="slot"):
        StartGate(slots, hold)


# --- the upstream clients pass through it -------------------------------------------------


class CountingGate(StartGate):
    """A gate that remembers the most turns it had out at once."""

    most = 0

    async def turn(self):
        result = await super().turn()
        self.most = max(self.most, self.slots - self.free)
        return result


@pytest.fixture
async def small_gate():
    gate = CountingGate(2, hold=LONG)
    http._loop_state().start_gate = gate
    return gate


async def _answer(n: int) -> str:
    messages = [{"role": "user", "content": f"question {n}"}]
    return "".join([d async for d in GPTalk.create_async_generator(messages=messages)])


async def test_gptalk_answers_that_start_together_take_turns_and_all_complete(emulator, transport, small_gate):
    for n in range(8):
        await emulator.anext(reply=f"answer {n}", chunk_chars=2)
    texts = await asyncio.wait_for(asyncio.gather(*(_answer(n) for n in range(8))), HANG)
    assert sorted(texts) == sorted(f"answer {n}" for n in range(8))
    assert small_gate.most == 2  # never more turns than slots (the hold is never reached)
    assert small_gate.free == 2 and not small_gate.waiting


@pytest.mark.parametrize("fault", ["login_500", "text_429", "text_500", "stream_cut"])
async def test_a_gptalk_start_that_fails_ends_its_turn(emulator, transport, small_gate, fault):
    await emulator.anext(fault=fault)
    with pytest.raises(UpstreamError):
        await asyncio.wait_for(_answer(0), HANG)
    assert small_gate.free == 2
    await emulator.anext(reply="after the fault")
    assert await asyncio.wait_for(_answer(1), HANG) == "after the fault"


async def test_a_gptalk_start_that_cannot_connect_ends_its_turn(small_gate):
    messages = [{"role": "user", "content": "anyone there?"}]
    with pytest.raises(UpstreamUnavailable):
        await asyncio.wait_for(
            _drain(GPTalk.create_async_generator(messages=messages, base_url=f"http://127.0.0.1:{free_port()}")), HANG
        )
    assert small_gate.free == 2 and not small_gate.waiting


async def _drain(stream) -> list[str]:
    return [delta async for delta in stream]


async def test_a_gptalk_start_cancelled_while_waiting_for_its_turn_leaves_nothing_behind(emulator, small_gate):
    holders = [await small_gate.turn(), await small_gate.turn()]
    waiting = asyncio.create_task(_answer(0))
    await asyncio.sleep(0.05)
    assert len(small_gate.waiting) == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for turn in holders:
        turn.leave()
    assert small_gate.free == 2
    assert (await emulator.astats())["texts"] == 0  # it never asked


async def test_openai_answers_take_turns_and_end_them_on_success_and_on_an_error(emulator, transport, small_gate):
    provider = OpenAIProvider(base_url=emulator.url + "/v1", name="Emu")
    for n in range(5):
        await emulator.anext(reply=f"reply {n}")
    await emulator.anext(fault="text_500")

    async def one(n: int) -> str:
        messages = [{"role": "user", "content": f"q {n}"}]
        stream = provider.create_async_generator(model="gpt-3.5-turbo", messages=messages)
        return "".join([d async for d in stream])

    results = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(6)), return_exceptions=True), HANG)
    texts = sorted(r for r in results if isinstance(r, str))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert texts == [f"reply {n}" for n in range(5)]
    assert len(errors) == 1 and isinstance(errors[0], UpstreamError)
    assert small_gate.most == 2 and small_gate.free == 2 and not small_gate.waiting


async def test_every_loop_has_its_own_gate_with_the_default_turns():
    gate = http.start_gate()
    assert gate is http.start_gate()
    assert (gate.slots, gate.hold, gate.free) == (START_SLOTS, START_HOLD_S, START_SLOTS)
