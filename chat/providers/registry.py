"""Which providers answer, which models they offer, and the answer with fallback.

Providers, in the order they are tried:

- the rows of chat.models.Provider with `enabled`, by (`order`, id);
- the built-in GPTalk provider ("GPTalk", at GPTALK_URL), unless a row of kind
  gptalk, or a row named "GPTalk", exists (enabled or not: a disabled row is how
  staff turn it off);
- "OpenAI" when OPENAI_BASE_URL or OPENAI_API_KEY is set (the names the official
  OpenAI SDK reads; the URL defaults to https://api.openai.com/v1 as in the SDK,
  the model to OPENAI_MODEL, else the first one listed), unless a row is named
  "OpenAI". It needs no clicks in the admin.

The built-in ones have order 0 and come before rows of the same order, GPTalk
first: GPTalk stays the default.

Model ids are "<provider name>/<model name>", e.g. "GPTalk/gpt-3.5-turbo" or
"Ollama/llama3.2:latest". The provider is the longest provider name that is a
prefix followed by "/", so model names may contain "/" themselves
("vLLM/meta-llama/Llama-3.1-8B-Instruct"); provider names may not (the admin
refuses them). The first id of `models_offered()` is the default: the first
provider's default model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.conf import settings

from chat.models import Message
from chat.models import Provider as ProviderRow
from chat.upstream.errors import ModelNotFound, UpstreamError, UpstreamUnavailable
from chat.upstream.gptalk_stream import ContentReset

from .base import ChatProvider, Messages
from .gptalk import GPTalkProvider
from .openai import OpenAIProvider

logger = logging.getLogger(__name__)

BUILTIN_GPTALK_NAME = "GPTalk"
ENV_OPENAI_NAME = "OpenAI"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Seconds a model list is reused; a provider that failed to list it is asked again sooner.
MODELS_TTL = 60.0
FAILED_MODELS_TTL = 10.0
# Listing models must not hold up a page for the full read timeout.
LIST_TIMEOUT = 5.0
# Message.model holds a model id: longer ones could not be recorded, so they are not offered.
MAX_MODEL_ID = Message._meta.get_field("model").max_length


@dataclass(frozen=True, slots=True)
class OfferedModel:
    """One entry of GET /api/models/ and of the model picker."""

    id: str
    provider: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "provider": self.provider, "name": self.name}


def model_id(provider_name: str, model_name: str) -> str:
    return f"{provider_name}/{model_name}"


# --- which providers --------------------------------------------------------------


def provider_from_row(row: ProviderRow) -> ChatProvider:
    """The provider a Provider row describes (enabled or not)."""
    if row.kind == ProviderRow.Kind.GPTALK:
        return GPTalkProvider(name=row.name, base_url=row.base_url, default_model=row.default_model)
    return OpenAIProvider(
        name=row.name, base_url=row.base_url, api_key=row.api_key, default_model=row.default_model
    )


def env_provider() -> OpenAIProvider | None:
    """The "OpenAI" provider of OPENAI_BASE_URL / OPENAI_API_KEY, if either is set."""
    base_url = (settings.OPENAI_BASE_URL or "").strip()
    api_key = (settings.OPENAI_API_KEY or "").strip()
    if not base_url and not api_key:
        return None
    return OpenAIProvider(
        name=ENV_OPENAI_NAME,
        base_url=base_url or OPENAI_DEFAULT_BASE_URL,
        api_key=api_key,
        default_model=(settings.OPENAI_MODEL or "").strip(),
    )


def providers_from(rows: list[ProviderRow]) -> list[ChatProvider]:
    """The enabled providers in fallback order, given ALL Provider rows."""
    names = {row.name for row in rows}
    ranked: list[tuple[tuple[int, int, int], ChatProvider]] = []
    has_gptalk_row = any(row.kind == ProviderRow.Kind.GPTALK for row in rows)
    if not has_gptalk_row and BUILTIN_GPTALK_NAME not in names:
        ranked.append(((0, 0, 0), GPTalkProvider(name=BUILTIN_GPTALK_NAME)))
    env = env_provider() if ENV_OPENAI_NAME not in names else None
    if env is not None:
        ranked.append(((0, 1, 0), env))
    for row in rows:
        if not row.enabled:
            continue
        try:
            ranked.append(((row.order, 2, row.pk), provider_from_row(row)))
        except ValueError as exc:  # e.g. an OpenAI-compatible row without a URL
            logger.warning("Provider %r is left out: %s", row.name, exc)
    ranked.sort(key=lambda item: item[0])
    return [provider for _rank, provider in ranked if provider.working]


# The provider rows, read at most once per ROWS_TTL seconds instead of once per
# answer (a trip to the database thread each). A change saved in this process
# is seen at once; one saved in another process within ROWS_TTL (plus one
# answer). Past the TTL the rows in hand are used while a fresh read runs
# behind them: an answer never waits for the provider rows in the database
# queue, except the very first of a process.
ROWS_TTL = 2.0
_rows: tuple[float, list[ProviderRow]] | None = None
_rows_version = 0  # bumped by every forget: a read begun before it is not kept
_rows_loading: asyncio.Future | None = None


def provider_rows_forget(**_kwargs) -> None:
    """Drop the cached rows; connected to Provider's post_save and post_delete (chat/apps.py)."""
    global _rows, _rows_version
    _rows = None
    _rows_version += 1


async def _rows_load() -> list[ProviderRow]:
    global _rows
    version = _rows_version
    rows = [row async for row in ProviderRow.objects.all()]
    if version == _rows_version:
        _rows = (time.monotonic() + ROWS_TTL, rows)
    return rows


def _rows_reload() -> asyncio.Future:
    """One read of the rows at a time, shared by everyone who asks meanwhile."""
    global _rows_loading
    loading = _rows_loading
    if loading is None or loading.done() or loading.get_loop() is not asyncio.get_running_loop():
        loading = _rows_loading = asyncio.ensure_future(_rows_load())
        loading.add_done_callback(_rows_load_failed)
    return loading


def _rows_load_failed(loading: asyncio.Future) -> None:
    if not loading.cancelled() and loading.exception() is not None:
        logger.warning("Reading the provider rows failed: %s", loading.exception())


def providers_warm() -> None:
    """Read the provider rows now (at process start), not in the first answer's way."""
    if _rows is None:
        _rows_reload()


async def providers_enabled() -> list[ChatProvider]:
    """The providers that may answer now, in fallback order."""
    rows = _rows
    if rows is None:
        return providers_from(await asyncio.shield(_rows_reload()))
    if rows[0] <= time.monotonic():
        _rows_reload()
    return providers_from(rows[1])


# --- which models -----------------------------------------------------------------

# provider.cache_key → (time.monotonic() when it expires, model names)
_models_cache: dict[tuple, tuple[float, list[str]]] = {}


def models_cache_clear() -> None:
    _models_cache.clear()


async def provider_models(provider: ChatProvider) -> list[str]:
    """The models of one provider, its default first, the others sorted.

    Cached for MODELS_TTL seconds. A provider that cannot list its models offers
    its default model only (none if it has no default), for FAILED_MODELS_TTL.
    """
    key = provider.cache_key
    cached = _models_cache.get(key)
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    ttl = MODELS_TTL
    try:
        names = await provider.list_models(timeout=LIST_TIMEOUT)
    except UpstreamError as exc:
        logger.warning("Provider %r did not list its models: %s", provider.name, exc.message)
        names, ttl = [], FAILED_MODELS_TTL
    default = provider.default_model or (names[0] if names else "")
    ordered = ([default] if default else []) + sorted(set(names) - {default})
    _models_cache[key] = (time.monotonic() + ttl, ordered)
    return ordered


async def models_offered() -> list[OfferedModel]:
    """Every model of every enabled provider, in fallback order; the first is the default."""
    providers = await providers_enabled()
    lists = await asyncio.gather(*(provider_models(p) for p in providers))
    return [
        OfferedModel(id=model_id(p.name, name), provider=p.name, name=name)
        for p, names in zip(providers, lists, strict=True)
        for name in names
        if len(model_id(p.name, name)) <= MAX_MODEL_ID
    ]


async def model_is_offered(model: str) -> bool:
    """True if `model` is one of the ids of GET /api/models/ (for chat.send validation).

    "" is not an id: callers treat it as "the default".
    """
    return any(offered.id == model for offered in await models_offered())


def provider_for(model: str, providers: list[ChatProvider]) -> tuple[ChatProvider, str] | None:
    """The provider and model name a model id names, if its provider is enabled."""
    matches = [p for p in providers if model.startswith(p.name + "/") and len(model) > len(p.name) + 1]
    if not matches:
        return None
    provider = max(matches, key=lambda p: len(p.name))
    return provider, model[len(provider.name) + 1 :]


# --- the answer -------------------------------------------------------------------


class AnswerStream:
    """One answer, from the first provider that starts it (gpt4free's RetryProvider, safer).

    Async-iterate it for str deltas (a ContentReset replaces all the text so far);
    `aclose()` stops the upstream request. The chosen model's provider is tried
    first, then every other enabled provider in order with its default model.
    A provider that fails before its first delta is skipped for the next one;
    after its first delta a failure ends the answer (the text so far is kept by
    the caller) — never a second provider's text glued onto the first's.

    `provider_name` and `model` (a model id) name the provider being asked, then
    the one that answered; if none could, the first one tried. The error raised
    when all fail is the first provider's type, its message listing each failure.
    """

    def __init__(self, *, model: str | None, messages: Messages) -> None:
        self.requested = model or ""
        self.messages = messages
        self.provider_name = ""
        self.model = ""
        self.usage: dict | None = None  # the upstream's token count, if it reported one
        self._deltas = self._answer()

    def __aiter__(self) -> AnswerStream:
        return self

    def __anext__(self):
        return self._deltas.__anext__()

    async def aclose(self) -> None:
        await self._deltas.aclose()

    async def _answer(self) -> AsyncIterator[str]:
        candidates = await self._candidates()
        failures: list[tuple[ChatProvider, UpstreamError]] = []
        for provider, name in candidates:
            started = False
            if not failures:
                self.provider_name = provider.name
            try:
                name = name or await self._default_model(provider)
                if not failures:
                    self.model = _recordable(model_id(provider.name, name))
                reported: dict = {}  # the provider's token count, if it gives one
                stream = provider.create_async_generator(model=name, messages=self.messages, usage=reported)
                async with contextlib.aclosing(stream):
                    async for delta in stream:
                        if not started and (delta or isinstance(delta, ContentReset)):
                            started = True
                            self.provider_name = provider.name
                            self.model = _recordable(model_id(provider.name, name))
                        yield delta
                self.usage = reported or None
                return
            except UpstreamError as exc:
                if started:
                    raise
                failures.append((provider, exc))
                logger.warning(
                    "Provider %r failed before its first delta (%s): %s",
                    provider.name, type(exc).__name__, exc.message,
                )  # fmt: skip
        raise _all_failed(failures)

    async def _candidates(self) -> list[tuple[ChatProvider, str | None]]:
        providers = await providers_enabled()
        if not providers:
            raise UpstreamUnavailable("No provider is enabled: staff can add one in the admin.")
        chosen = provider_for(self.requested, providers) if self.requested else None
        if chosen is None:
            if self.requested:
                logger.warning("Model %r is not offered any more: using the default.", self.requested)
            return [(provider, None) for provider in providers]
        first, name = chosen
        return [(first, name)] + [(p, None) for p in providers if p is not first]

    @staticmethod
    async def _default_model(provider: ChatProvider) -> str:
        if provider.default_model:
            return provider.default_model  # no listing (and its wait) before the answer
        names = await provider_models(provider)
        if not names:
            raise ModelNotFound(f"The provider “{provider.name}” offers no model (it did not list any).")
        return names[0]


def answer_stream(*, model: str | None, messages: Messages) -> AnswerStream:
    """The provider call of chat.generation: the answer to `messages` with fallback.

    `model` is a model id (see the module docstring); None, "" or an id whose
    provider is not enabled any more mean the default model. Nothing happens
    until the stream is iterated.
    """
    return AnswerStream(model=model, messages=messages)


def _recordable(model: str) -> str:
    """`model`, or "" when Message.model could not hold it (see MAX_MODEL_ID)."""
    return model if len(model) <= MAX_MODEL_ID else ""


def _all_failed(failures: list[tuple[ChatProvider, UpstreamError]]) -> UpstreamError:
    """The error of the first provider tried; its message names every failure."""
    _, first = failures[0]
    if len(failures) == 1:
        return first
    tried = " ".join(f"{p.name}: {exc.message}" for p, exc in failures)
    error = type(first)(f"No provider could answer. {tried}", status_code=first.status_code)
    error.__cause__ = first
    return error
