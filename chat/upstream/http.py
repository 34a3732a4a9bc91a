"""The shared HTTP side of every upstream client: settings, connection pools, transport errors.

The settings are read from the site's settings module (gptalk_site/settings.py,
which alone reads the environment), through `django.conf.settings` when Django
is set up; a plain script without Django (the documented GPTalk examples,
bench/) gets the same values, read from the same variables:

    GPTALK_URL              base URL of the GPTalk API (default: the built-in emulator)
    GPTALK_PROXY            HTTP(S) proxy for every upstream request (default: none)
    GPTALK_CONNECT_TIMEOUT  seconds to connect (default 10)
    GPTALK_READ_TIMEOUT     seconds without a byte from the upstream (default 60)
    GPTALK_TRANSPORT        "aiohttp" (default) or "httpx"

One httpx.AsyncClient (one connection pool) is kept per event loop, proxy and
transport. A client is bound to the loop it first ran on, so the cache is keyed by
the running loop; a loop's clients are closed when that loop shuts down (see
_LoopState) or earlier by `aclose_clients()`. Each loop also has its start gate
(gate.py), through which the answers that start together ask in turns.

Failures of the transport become the typed errors of errors.py, worded by
`transport_error` for the upstream the caller names (`Names`).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import aiohttp
import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .client import CookielessAiohttpTransport, UpstreamClient
from .errors import StreamIncomplete, UpstreamError, UpstreamUnavailable
from .gate import StartGate

# httpx-aiohttp maps most aiohttp errors to httpx ones, but re-raises the rest.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.RequestError, TimeoutError, OSError, aiohttp.ClientError)

# What every client answers: [{"role": ..., "content": ...}, ...], oldest first.
Messages = Sequence[Mapping[str, str]]

TRANSPORTS = ("aiohttp", "httpx")
# Every relayed answer holds one connection for its whole length.
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE_CONNECTIONS = 100
# The site's settings module, read as a plain module when Django is not set up.
SITE_SETTINGS_MODULE = "gptalk_site.settings"


def setting(name: str, default: Any = None) -> Any:
    """The setting `name` (a blank string counts as unset, giving `default`)."""
    try:
        value = getattr(settings, name, None)
    except (ImproperlyConfigured, ImportError):
        # No DJANGO_SETTINGS_MODULE: a plain script. Importing the settings module
        # does not set Django up; it only computes the values from the environment.
        value = getattr(import_module(SITE_SETTINGS_MODULE), name, None)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return value


def _float_setting(name: str) -> float:
    raw = setting(name)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration of one call."""

    base_url: str
    proxy: str | None
    transport: str
    connect_timeout: float
    read_timeout: float

    @property
    def timeout(self) -> httpx.Timeout:
        # Writes are small JSON bodies; waiting for a pooled connection is bounded
        # like a connect. `read` is the longest silence tolerated, also mid-stream.
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.connect_timeout,
            pool=self.connect_timeout,
        )


def config_load(
    *,
    base_url: str | None = None,
    proxy: str | None = None,
    transport: str | None = None,
    read_timeout: float | None = None,
    connect_timeout: float | None = None,
) -> Config:
    """Arguments win over settings; `base_url` None means GPTALK_URL."""
    kind = str(transport or setting("GPTALK_TRANSPORT", "")).strip().lower()
    if kind not in TRANSPORTS:
        raise ValueError(f"GPTALK_TRANSPORT must be one of {TRANSPORTS}, not {kind!r}")
    return Config(
        base_url=str(base_url or setting("GPTALK_URL", "")).rstrip("/"),
        proxy=proxy or setting("GPTALK_PROXY") or None,
        transport=kind,
        connect_timeout=connect_timeout or _float_setting("GPTALK_CONNECT_TIMEOUT"),
        read_timeout=read_timeout or _float_setting("GPTALK_READ_TIMEOUT"),
    )


def client_create(*, proxy: str | None, transport: str) -> httpx.AsyncClient:
    """A new client for one (proxy, transport); the caller owns and closes it.

    trust_env is off: only `proxy` / GPTALK_PROXY route traffic, so HTTP_PROXY in the
    environment never sends the local emulator's traffic elsewhere. Every request
    passes its own timeout (Config.timeout); the client's is only a fallback.
    """
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS
    )
    timeout = httpx.Timeout(
        _float_setting("GPTALK_READ_TIMEOUT"), connect=_float_setting("GPTALK_CONNECT_TIMEOUT")
    )
    if transport == "aiohttp":
        # With an explicit transport, httpx would send proxied requests through
        # its own proxy transport (AsyncClient._init_proxy_transport): so the
        # AiohttpTransport does the proxying itself and the client gets no proxy.
        aiohttp_transport = CookielessAiohttpTransport(
            limits=limits, trust_env=False, proxy=httpx.Proxy(proxy) if proxy else None
        )
        return UpstreamClient(transport=aiohttp_transport, timeout=timeout, trust_env=False)
    return UpstreamClient(proxy=proxy, limits=limits, timeout=timeout, trust_env=False)


_ClientKey = tuple[str | None, str]


class _LoopState:
    """The shared clients, the logins under way and the start gate of one event loop.

    An httpx.AsyncClient (and the aiohttp session under it) and an asyncio task
    may only be used on one loop. The clients are closed when the loop shuts its
    async generators down (asyncio.run, asyncio.Runner and so pytest-asyncio do),
    through the `_closer` generator started here, so a plain script needs no
    explicit cleanup; `aclose_clients()` closes them earlier.
    """

    def __init__(self) -> None:
        self.clients: dict[_ClientKey, httpx.AsyncClient] = {}
        self.logins: list[Any] = []  # GPTalk logins under way (chat.upstream.gptalk)
        self.start_gate = StartGate()
        self.closer = self._closer()
        # Step to the first `yield` now: this registers the generator with the
        # running loop (sys.set_asyncgen_hooks), whose shutdown_asyncgens() will
        # then aclose() it. Nothing is awaited before that yield.
        with contextlib.suppress(StopIteration):
            self.closer.asend(None).send(None)

    async def _closer(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            # The generator's finalizer refers to the loop: drop the entry so that
            # the loop (a weak key) can be collected.
            _loops.pop(asyncio.get_running_loop(), None)
            clients, self.clients = self.clients, {}
            for client in clients.values():
                await client.aclose()


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]
_loops = weakref.WeakKeyDictionary()


def _loop_state() -> _LoopState:
    loop = asyncio.get_running_loop()
    state = _loops.get(loop)
    if state is None:
        state = _loops[loop] = _LoopState()
    return state


def client_get(*, proxy: str | None, transport: str) -> httpx.AsyncClient:
    """The shared client of the running loop for this proxy and transport."""
    clients = _loop_state().clients
    client = clients.get((proxy, transport))
    if client is None or client.is_closed:
        client = clients[(proxy, transport)] = client_create(proxy=proxy, transport=transport)
    return client


def clients_warm() -> None:
    """Create the running loop's client for the configured proxy and transport
    now (when a process starts), not in its first answer's way: building one
    takes ~17 ms (httpx loads the system's certificates into an SSL context)."""
    try:
        config = config_load()
    except ValueError:
        return  # a bad setting: the first answer reports it, worded for the person
    client_get(proxy=config.proxy, transport=config.transport)


def logins_get() -> list[Any]:
    """The GPTalk logins under way on the running loop (one list per loop: a
    task belongs to its loop; the site runs one loop per process)."""
    return _loop_state().logins


def start_gate() -> StartGate:
    """The running loop's gate that answers pass to ask their upstream (gate.py)."""
    return _loop_state().start_gate


async def aclose_clients() -> None:
    """Close the shared clients of the running loop now (e.g. at ASGI shutdown)."""
    state = _loops.get(asyncio.get_running_loop())
    if state is not None:
        await state.closer.aclose()


# --- transport failures as typed errors ------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """How the messages of `transport_error` name one upstream, mid-sentence.

    e.g. service "the GPTalk service", answer "the GPTalk answer", url "the
    GPTalk URL", requests "GPTalk requests".
    """

    service: str
    answer: str
    url: str
    requests: str


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def transport_error(
    exc: BaseException, config: Config, *, receiving: bool, names: Names
) -> UpstreamError:
    """The typed error for a transport failure (httpx, or aiohttp under it).

    `receiving`: the failure came while reading the answer stream, so the text
    received so far is partial.
    """
    # httpx-aiohttp maps aiohttp errors loosely (a server disconnect becomes a
    # ConnectTimeout): classify by the aiohttp error when there is one.
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    via = " through the proxy" if config.proxy else ""
    service = names.service
    if isinstance(cause, httpx.ReadTimeout | httpx.WriteTimeout | aiohttp.SocketTimeoutError):
        return UpstreamUnavailable(
            f"{_capitalized(service)} did not answer within {config.read_timeout:g} s."
        )
    if isinstance(cause, httpx.PoolTimeout):
        return UpstreamUnavailable(
            f"Too many {names.requests} are running at once. Try again later."
        )
    if isinstance(cause, httpx.ConnectTimeout) or (
        aiohttp and isinstance(cause, aiohttp.ConnectionTimeoutError)
    ):
        return UpstreamUnavailable(
            f"Could not connect to {service}{via} within {config.connect_timeout:g} s."
        )
    if receiving:
        return StreamIncomplete(
            f"{_capitalized(names.answer)} was cut off before it was complete."
        )
    if isinstance(cause, httpx.ProxyError) or (
        aiohttp
        and isinstance(cause, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError)
    ):
        return UpstreamUnavailable(f"The proxy to {service} failed. Try again later.")
    if isinstance(cause, httpx.ConnectError) or (
        aiohttp and isinstance(cause, aiohttp.ClientConnectorError)
    ):
        return UpstreamUnavailable(f"Could not reach {service}{via}. Try again later.")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return UpstreamUnavailable(f"{_capitalized(names.url)} {config.base_url!r} is not usable.")
    if isinstance(cause, TimeoutError):
        return UpstreamUnavailable(
            f"{_capitalized(service)} did not answer within {config.read_timeout:g} s."
        )
    return UpstreamUnavailable(f"{_capitalized(service)} closed the connection. Try again later.")
