"""Usage of each answer: characters and tokens, reported by the upstream or estimated.

Whole chats go over a real websocket to the real emulator (GPTalk API and its
OpenAI-compatible /v1), as tests/test_providers.py does.
"""

from __future__ import annotations

import json

import httpx
import pytest

from chat.emulator.openai_api import token_count
from chat.services.usage import tokens_estimate, usage_measure
from tests.test_providers import (  # noqa: F401 - fixtures by name
    _close_process_state,
    _no_env_provider_and_fresh_model_lists,
    alice_ws,
    chat,
    emulated_row,
)

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_reported_usage_is_kept_and_not_marked_estimated():
    reported = {"prompt_tokens": 9, "completion_tokens": 3}
    usage = usage_measure(prompt_chars=40, answer="Hello there", reported=reported)
    assert usage.as_fields() == {
        "prompt_chars": 40, "answer_chars": 11, "prompt_tokens": 9, "answer_tokens": 3, "tokens_estimated": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    "reported",
    [
        None,
        {},
        {"prompt_tokens": 9},
        {"prompt_tokens": "9", "completion_tokens": 3},
        {"prompt_tokens": True, "completion_tokens": 3},
    ],
)
def test_missing_or_odd_usage_is_estimated_and_marked(reported):
    usage = usage_measure(prompt_chars=41, answer="x" * 10, reported=reported)
    assert (usage.prompt_tokens, usage.answer_tokens, usage.tokens_estimated) == (11, 3, True)
    assert tokens_estimate(chars=0) == 0 and tokens_estimate(chars=4) == 1 and tokens_estimate(chars=5) == 2


async def test_emulator_reports_usage_in_a_last_chunk_only_when_asked(emulator):
    body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi, you"}], "stream": True}
    async with httpx.AsyncClient() as client:
        events = []
        for options in (None, {"include_usage": True}):
            await emulator.anext(reply="One, two.")
            request = {**body, "stream_options": options} if options else body
            response = await client.post(emulator.url + "/v1/chat/completions", json=request)
            lines = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
            assert lines[-1] == "[DONE]"
            events.append([json.loads(line) for line in lines[:-1]])
        whole = (await client.post(emulator.url + "/v1/chat/completions", json={**body, "stream": False})).json()
    plain, with_usage = events
    assert not any("usage" in event for event in plain)
    last = with_usage[-1]
    assert last["choices"] == [] and last["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert whole["usage"]["prompt_tokens"] == 3 and whole["usage"]["completion_tokens"] > 0
    assert token_count("One, two.") == 4


async def test_answer_through_openai_compatible_records_the_reported_tokens(alice_ws, emulator):
    await emulated_row(emulator)
    await emulator.anext(reply="Counted by the server.")
    done, message = await chat(alice_ws, model="Emu/gpt-4o-mini", content="How many tokens?")
    assert done["status"] == "complete"
    assert (message.provider, message.model) == ("Emu", "Emu/gpt-4o-mini")
    assert message.prompt_chars == len("How many tokens?")
    assert message.answer_chars == len("Counted by the server.")
    assert (message.prompt_tokens, message.answer_tokens) == (
        token_count("How many tokens?"), token_count("Counted by the server."),
    )  # fmt: skip
    assert message.tokens_estimated is False


async def test_answer_through_gptalk_records_an_estimate_marked_as_such(alice_ws, emulator):
    await emulator.anext(reply="GPTalk does not count tokens.")
    done, message = await chat(alice_ws, content="Hello GPTalk")
    assert done["status"] == "complete" and message.provider == "GPTalk"
    assert message.prompt_chars == len("Hello GPTalk") and message.answer_chars == 29
    assert (message.prompt_tokens, message.answer_tokens) == (3, 8)
    assert message.tokens_estimated is True


async def test_a_failed_answer_still_records_its_prompt_size(alice_ws, emulator):
    await emulator.anext(fault="text_500")
    done, message = await chat(alice_ws, content="Will fail")
    assert done["status"] == "failed"
    assert (message.prompt_chars, message.answer_chars, message.answer_tokens) == (9, 0, 0)
    assert message.tokens_estimated is True
