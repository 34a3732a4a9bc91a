"""EarlyStream: an answer's upstream stream, asked for its first delta at once
(while the answer's rows are written), then read as the stream itself."""

from __future__ import annotations

import asyncio

import pytest

from chat.generation.answer import EarlyStream


async def _deltas(*items, fail: Exception | None = None, gate: asyncio.Event | None = None):
    if gate is not None:
        await gate.wait()
    for item in items:
        yield item
    if fail is not None:
        raise fail


async def test_the_first_delta_is_asked_for_at_once_then_the_rest_come_in_order():
    asked = []

    async def stream():
        for n in range(5):
            asked.append(n)
            yield f"d{n}"

    early = EarlyStream(stream())
    await asyncio.sleep(0)  # the first request runs before anyone iterates
    assert asked == [0]
    assert [delta async for delta in early] == ["d0", "d1", "d2", "d3", "d4"]


async def test_an_empty_stream_ends_at_once():
    assert [delta async for delta in EarlyStream(_deltas())] == []


@pytest.mark.parametrize("count", [0, 2])
async def test_an_error_comes_out_where_the_stream_raised_it(count):
    early = EarlyStream(_deltas(*(f"d{n}" for n in range(count)), fail=ValueError("upstream broke")))
    got = []
    with pytest.raises(ValueError, match="upstream broke"):
        async for delta in early:
            got.append(delta)
    assert got == [f"d{n}" for n in range(count)]


async def test_closing_before_the_first_delta_cancels_the_request():
    gate = asyncio.Event()
    early = EarlyStream(_deltas("never", gate=gate))
    first = early.first
    await asyncio.sleep(0)
    await early.aclose()
    assert first is not None and first.cancelled()
