"""chat/providers/registry.py: which providers answer, their models, the answer with
fallback, GET /api/models/, and whole chats through each provider over a websocket.

Everything talks to the real emulator over loopback: it serves the GPTalk API and
the OpenAI-compatible one (under /v1) on the same port, with one scripted queue.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from chat.emulator.replies import default_reply
from chat.models import Message, Provider
from chat.providers import registry
from chat.providers.gptalk import GPTalkProvider
from chat.providers.openai import OpenAIProvider
from chat.upstream.errors import AuthError, StreamIncomplete, UpstreamError, UpstreamUnavailable
from tests.fixtures.emulator import free_port
from tests.ws import connect, is_done, receive_until

pytestmark = [pytest.mark.django_db(transaction=True)]

HANG = 20.0  # seconds: the "does not hang" bound, never a performance claim
MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.fixture(autouse=True)
def _no_env_provider_and_fresh_model_lists(settings):
    """A developer's OPENAI_* variables must not add a provider to these tests."""
    settings.OPENAI_BASE_URL = ""
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_MODEL = ""
    registry.models_cache_clear()
    yield
    registry.models_cache_clear()


@pytest.fixture(autouse=True)
async def _close_process_state():
    """Each test has its own event loop: end its answers and HTTP clients with it."""
    yield
    from chat.generation import get_manager
    from chat.upstream.http import aclose_clients

    await get_manager().shutdown()
    await aclose_clients()


async def emulated_row(emulator, name: str = "Emu", **fields) -> Provider:
    """A Provider row of kind openai pointing at the emulator's OpenAI-compatible API."""
    fields = {"kind": Provider.Kind.OPENAI, "base_url": emulator.url + "/v1", "api_key": "sk-test", **fields}
    return await Provider.objects.acreate(name=name, **fields)


async def dead_row(name: str = "Dead", **fields) -> Provider:
    """A row of kind openai at a closed loopback port."""
    fields = {"default_model": "gpt-4o-mini", **fields}
    url = f"http://127.0.0.1:{free_port()}/v1"
    return await Provider.objects.acreate(name=name, kind=Provider.Kind.OPENAI, base_url=url, **fields)


async def answer(model: str | None, messages=MESSAGES) -> tuple[registry.AnswerStream, str]:
    stream = registry.answer_stream(model=model, messages=messages)
    deltas = await asyncio.wait_for(_drain(stream), HANG)
    return stream, "".join(deltas)


async def _drain(stream) -> list[str]:
    return [delta async for delta in stream]


def names(providers) -> list[str]:
    return [p.name for p in providers]


# --- which providers ----------------------------------------------------------------------


async def test_with_no_rows_the_builtin_gptalk_provider_answers(emulator):
    providers = await registry.providers_enabled()
    assert names(providers) == ["GPTalk"]
    assert isinstance(providers[0], GPTalkProvider) and providers[0].base_url == ""


async def test_rows_follow_order_disabled_rows_are_left_out(emulator):
    await Provider.objects.acreate(name="Late", kind="openai", base_url="http://h/v1", order=5)
    await Provider.objects.acreate(name="Early", kind="openai", base_url="http://h/v1", order=0)
    await Provider.objects.acreate(name="Off", kind="openai", base_url="http://h/v1", enabled=False)
    await Provider.objects.acreate(name="NoUrl", kind="openai", base_url="")
    assert names(await registry.providers_enabled()) == ["GPTalk", "Early", "Late"]


async def test_a_gptalk_row_replaces_the_builtin_one(emulator):
    await Provider.objects.acreate(name="Local GPTalk", kind="gptalk", order=3)
    await Provider.objects.acreate(name="Ollama", kind="openai", base_url="http://h/v1", order=1)
    assert names(await registry.providers_enabled()) == ["Ollama", "Local GPTalk"]
    row = await Provider.objects.aget(kind="gptalk")
    row.enabled = False
    await row.asave()  # as the admin saves it: seen at once
    assert names(await registry.providers_enabled()) == ["Ollama"]


async def test_provider_rows_are_read_once_per_ttl_and_a_save_is_seen_at_once(emulator, monkeypatch):
    monkeypatch.setattr(registry, "ROWS_TTL", 60)
    await Provider.objects.acreate(name="Ollama", kind="openai", base_url="http://h/v1", order=1)
    assert "Ollama" in names(await registry.providers_enabled())
    # A change that sends no signal here (another process, a bulk update): the
    # rows already read still answer — no query per answer...
    await Provider.objects.filter(name="Ollama").aupdate(enabled=False)
    assert "Ollama" in names(await registry.providers_enabled())
    # ...until the TTL has passed: then the rows in hand answer once more (no
    # answer waits for the database) while a fresh read runs behind them.
    monkeypatch.setattr(registry, "_rows", (0.0, registry._rows[1]))
    assert "Ollama" in names(await registry.providers_enabled())
    await registry._rows_loading
    assert "Ollama" not in names(await registry.providers_enabled())
    # Adding or deleting through the ORM in this process: seen at once.
    await Provider.objects.acreate(name="vLLM", kind="openai", base_url="http://v/v1", order=2)
    assert "vLLM" in names(await registry.providers_enabled())
    await (await Provider.objects.aget(name="vLLM")).adelete()
    assert "vLLM" not in names(await registry.providers_enabled())


async def test_env_variables_add_an_openai_provider(emulator, settings):
    # settings.py reads OPENAI_* from the environment (tests/test_settings.py checks that).
    settings.OPENAI_BASE_URL = emulator.url + "/v1"
    settings.OPENAI_API_KEY = "sk-env"
    settings.OPENAI_MODEL = "gpt-4o-mini"
    providers = await registry.providers_enabled()
    assert names(providers) == ["GPTalk", "OpenAI"]
    env = providers[1]
    assert isinstance(env, OpenAIProvider)
    assert (env.base_url, env.api_key, env.default_model) == (emulator.url + "/v1", "sk-env", "gpt-4o-mini")
    stream, text = await answer("OpenAI/gpt-4o-mini")
    assert (stream.provider_name, stream.model, text) == ("OpenAI", "OpenAI/gpt-4o-mini", default_reply("Hello"))
    assert (await emulator.astats())["logins"] == 0  # GPTalk was not asked


async def test_env_key_alone_means_openai_itself_and_a_row_can_take_its_place(settings):
    settings.OPENAI_API_KEY = "sk-env"
    assert registry.env_provider().base_url == "https://api.openai.com/v1"
    settings.OPENAI_API_KEY = ""
    assert registry.env_provider() is None
    settings.OPENAI_BASE_URL = "http://127.0.0.1:11434/v1"
    await Provider.objects.acreate(name="OpenAI", kind="openai", base_url="http://h/v1", enabled=False)
    assert names(await registry.providers_enabled()) == ["GPTalk"]


def test_model_ids_name_the_provider_and_may_contain_slashes():
    providers = [GPTalkProvider(), OpenAIProvider(name="vLLM", base_url="http://h/v1"),
                 OpenAIProvider(name="vLLM/big", base_url="http://h/v1")]  # fmt: skip
    provider, name = registry.provider_for("vLLM/meta-llama/Llama-3.1-8B", providers)
    assert (provider.name, name) == ("vLLM", "meta-llama/Llama-3.1-8B")
    provider, name = registry.provider_for("vLLM/big/qwen", providers)
    assert (provider.name, name) == ("vLLM/big", "qwen")
    assert registry.provider_for("Nope/x", providers) is None
    assert registry.provider_for("GPTalk/", providers) is None
    assert registry.provider_for("gpt-3.5-turbo", providers) is None


# --- which models -------------------------------------------------------------------------


async def test_models_offered_default_first_and_model_is_offered(emulator):
    await emulated_row(emulator, default_model="gpt-4o-mini")
    offered = [m.as_dict() for m in await registry.models_offered()]
    assert offered == [
        {"id": "GPTalk/gpt-3.5-turbo", "provider": "GPTalk", "name": "gpt-3.5-turbo"},
        {"id": "Emu/gpt-4o-mini", "provider": "Emu", "name": "gpt-4o-mini"},
        {"id": "Emu/gpt-3.5-turbo", "provider": "Emu", "name": "gpt-3.5-turbo"},
    ]
    assert await registry.model_is_offered("Emu/gpt-3.5-turbo")
    assert not await registry.model_is_offered("Emu/llama-9000")
    assert not await registry.model_is_offered("gpt-3.5-turbo")
    assert not await registry.model_is_offered("")


async def test_a_failing_provider_lists_its_default_model_only(emulator):
    await dead_row("Dead")  # default model gpt-4o-mini
    await dead_row("DeadNoDefault", default_model="")
    assert [m.id for m in await registry.models_offered()] == ["GPTalk/gpt-3.5-turbo", "Dead/gpt-4o-mini"]


async def test_model_lists_are_cached_for_a_while():
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"data": [{"id": "b"}, {"id": "a"}]})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    provider = OpenAIProvider(name="Mock", base_url="http://upstream.test/v1", client=client)
    assert await registry.provider_models(provider) == ["b", "a"]  # no default: the first listed
    assert await registry.provider_models(provider) == ["b", "a"]
    assert len(requests) == 1
    registry.models_cache_clear()
    await registry.provider_models(provider)
    assert len(requests) == 2


# --- the answer, with fallback ----------------------------------------------------------


async def test_default_answer_comes_from_gptalk_unchanged(emulator):
    await emulator.anext(reply="From GPTalk.")
    stream, text = await answer(None)
    assert (stream.provider_name, stream.model, text) == ("GPTalk", "GPTalk/gpt-3.5-turbo", "From GPTalk.")
    stats = await emulator.astats()
    assert (stats["logins"], stats["texts"], stats["streams"]) == (1, 1, 1)


async def test_answer_through_the_openai_compatible_provider(emulator):
    await emulated_row(emulator)
    await emulator.anext(reply="From the OpenAI API.")
    stream, text = await answer("Emu/gpt-4o-mini")
    assert (stream.provider_name, stream.model, text) == ("Emu", "Emu/gpt-4o-mini", "From the OpenAI API.")
    assert (await emulator.astats())["logins"] == 0


async def test_unknown_model_id_uses_the_default(emulator):
    stream, text = await answer("Gone/some-model")
    assert (stream.provider_name, stream.model) == ("GPTalk", "GPTalk/gpt-3.5-turbo")
    assert text == default_reply("Hello")


async def test_failure_before_the_first_delta_falls_back_to_the_next_provider(emulator):
    await dead_row("Dead")
    stream, text = await answer("Dead/gpt-4o-mini")
    assert (stream.provider_name, stream.model) == ("GPTalk", "GPTalk/gpt-3.5-turbo")
    assert text == default_reply("Hello")


async def test_a_queued_fault_before_the_first_delta_falls_back_too(emulator):
    await emulated_row(emulator)
    await emulator.anext(fault="openai_401")  # taken by the OpenAI request
    await emulator.anext(reply="GPTalk saved the day.")  # taken by GPTalk's text request
    stream, text = await answer("Emu/gpt-3.5-turbo")
    assert (stream.provider_name, text) == ("GPTalk", "GPTalk saved the day.")


async def test_failure_after_the_first_delta_keeps_the_text_and_is_not_retried(emulator):
    await emulated_row(emulator)
    await emulator.anext(reply="A partial answer that is cut.", chunk_chars=4, fault="stream_cut")
    stream = registry.answer_stream(model="Emu/gpt-3.5-turbo", messages=MESSAGES)
    received: list[str] = []
    with pytest.raises(StreamIncomplete):
        async for delta in stream:
            received.append(delta)
    assert received and "A partial answer that is cut.".startswith("".join(received))
    assert (stream.provider_name, stream.model) == ("Emu", "Emu/gpt-3.5-turbo")
    assert (await emulator.astats())["logins"] == 0  # GPTalk was never asked


async def test_when_all_fail_the_first_error_names_every_failure(emulator):
    await dead_row("Dead")
    await emulator.anext(fault="login_500")
    stream = registry.answer_stream(model="Dead/gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(UpstreamError) as info:
        await _drain(stream)
    assert type(info.value) is UpstreamUnavailable
    assert info.value.message.startswith("No provider could answer. Dead: Could not reach")
    assert "GPTalk: The GPTalk service failed" in info.value.message
    assert (stream.provider_name, stream.model) == ("Dead", "Dead/gpt-4o-mini")


async def test_a_single_provider_failing_raises_its_own_error(emulator):
    await emulator.anext(fault="login_500")
    with pytest.raises(UpstreamUnavailable) as info:
        await answer(None)
    assert info.value.message.startswith("The GPTalk service failed")


async def test_no_provider_enabled(emulator):
    await Provider.objects.acreate(name="GPTalk", kind="gptalk", enabled=False)
    with pytest.raises(UpstreamUnavailable, match="No provider is enabled"):
        await answer(None)


async def test_auth_error_of_the_chosen_provider_is_kept_when_fallback_fails(emulator):
    await emulated_row(emulator)
    await Provider.objects.acreate(name="GPTalk", kind="gptalk", enabled=False)
    await emulator.anext(fault="openai_401")
    with pytest.raises(AuthError):
        await answer("Emu/gpt-3.5-turbo")


# --- GET /api/models/ ---------------------------------------------------------------------


def test_models_api_needs_a_login(client):
    response = client.get(reverse("api:models"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_models_api_lists_enabled_models_without_keys(client, make_user, emulator):
    Provider.objects.create(name="Emu", kind="openai", base_url=emulator.url + "/v1", api_key="sk-very-secret")
    Provider.objects.create(name="Off", kind="openai", base_url=emulator.url + "/v1", enabled=False)
    client.force_login(make_user())
    response = client.get(reverse("api:models"))
    assert response.status_code == 200
    assert response["content-type"] == "application/json"
    assert response.json() == [
        {"id": "GPTalk/gpt-3.5-turbo", "provider": "GPTalk", "name": "gpt-3.5-turbo"},
        {"id": "Emu/gpt-3.5-turbo", "provider": "Emu", "name": "gpt-3.5-turbo"},
        {"id": "Emu/gpt-4o-mini", "provider": "Emu", "name": "gpt-4o-mini"},
    ]
    body = response.content.decode()
    assert "sk-very-secret" not in body and emulator.url not in body and "Off" not in body
    assert client.post(reverse("api:models")).status_code == 405


# --- whole chats over the websocket, each provider --------------------------------------


@pytest.fixture
async def alice_ws(make_user, emulator):
    alice = await sync_to_async(make_user)("alice")
    communicator = await connect(alice)
    connected, _ = await communicator.connect()
    assert connected
    yield communicator
    await communicator.disconnect()


async def chat(ws, *, model: str | None = None, content: str = "Hi there") -> tuple[dict, Message]:
    frame = {"type": "chat.send", "conversation": None, "content": content}
    if model is not None:
        frame["model"] = model
    await ws.send_json_to(frame)
    done = (await receive_until(ws, is_done))[-1]
    return done, await Message.objects.aget(pk=done["message"])


async def test_websocket_chat_through_gptalk_records_provider_and_model(alice_ws, emulator):
    await emulator.anext(reply="Hello from GPTalk.")
    done, message = await chat(alice_ws)
    assert (done["status"], done["content"]) == ("complete", "Hello from GPTalk.")
    assert (message.provider, message.model, message.content) == (
        "GPTalk", "GPTalk/gpt-3.5-turbo", "Hello from GPTalk."
    )  # fmt: skip


async def test_websocket_chat_through_the_openai_compatible_provider(alice_ws, emulator):
    await emulated_row(emulator)
    done, message = await chat(alice_ws, model="Emu/gpt-4o-mini", content="Which API?")
    assert (done["status"], done["content"]) == ("complete", default_reply("Which API?"))
    assert (message.provider, message.model, message.status) == ("Emu", "Emu/gpt-4o-mini", "complete")
    stats = await emulator.astats()
    assert (stats["logins"], stats["streams"], stats["last_prompts"]) == (0, 1, ["Which API?"])


async def test_websocket_fallback_records_the_provider_that_answered(alice_ws, emulator):
    await dead_row("Dead")
    await emulator.anext(reply="The fallback answered.")
    done, message = await chat(alice_ws, model="Dead/gpt-4o-mini")
    assert (done["status"], done["content"]) == ("complete", "The fallback answered.")
    assert (message.provider, message.model) == ("GPTalk", "GPTalk/gpt-3.5-turbo")


async def test_websocket_failure_after_the_first_delta_keeps_the_partial_text(alice_ws, emulator):
    await emulated_row(emulator)
    await emulator.anext(reply="Cut in the middle of a sentence.", chunk_chars=4, fault="stream_cut")
    done, message = await chat(alice_ws, model="Emu/gpt-3.5-turbo")
    assert done["status"] == "failed"
    assert done["content"] and "Cut in the middle of a sentence.".startswith(done["content"])
    assert "was cut off" in done["error"] and "Emu" in done["error"]
    assert (message.status, message.content, message.provider) == ("failed", done["content"], "Emu")
    assert (await emulator.astats())["logins"] == 0
