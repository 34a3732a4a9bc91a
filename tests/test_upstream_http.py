"""chat/upstream/http.py: the settings every upstream client reads (from Django's
settings, or from the site's settings module in a plain script) and the shared
connection pools, one per event loop, proxy and transport.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chat.upstream import http as upstream_http
from chat.upstream.gptalk import aclose_clients
from tests.fixtures.fake_gptalk import fresh_state  # noqa: F401 - an autouse fixture

# --- configuration and the shared clients ---------------------------------------------


def test_config_reads_django_settings(settings):
    settings.GPTALK_URL = "http://example.test:9/"
    settings.GPTALK_PROXY = "http://proxy.test:3128"
    settings.GPTALK_READ_TIMEOUT = 2.5
    settings.GPTALK_CONNECT_TIMEOUT = 1.5
    settings.GPTALK_TRANSPORT = "httpx"
    config = upstream_http.config_load()
    assert config.base_url == "http://example.test:9"
    assert config.proxy == "http://proxy.test:3128"
    assert config.transport == "httpx"
    assert config.timeout == httpx.Timeout(connect=1.5, read=2.5, write=1.5, pool=1.5)
    # Arguments win.
    config = upstream_http.config_load(
        base_url="http://b.test", proxy="http://p.test", transport="aiohttp"
    )
    assert (config.base_url, config.proxy, config.transport) == (
        "http://b.test",
        "http://p.test",
        "aiohttp",
    )


def test_config_rejects_bad_values(settings):
    settings.GPTALK_TRANSPORT = "curl"
    with pytest.raises(ValueError):
        upstream_http.config_load()
    settings.GPTALK_TRANSPORT = "aiohttp"
    settings.GPTALK_READ_TIMEOUT = "soon"
    with pytest.raises(ValueError):
        upstream_http.config_load()


def test_config_without_django_reads_the_environment():
    script = (
        "from chat.upstream.http import config_load\n"
        "import django.conf\n"
        "c = config_load()\n"
        "assert not django.conf.settings.configured\n"
        "print(c.base_url, c.proxy, c.transport, c.connect_timeout, c.read_timeout)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPTALK_", "DJANGO_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    env["GPTALK_READ_TIMEOUT"], env["GPTALK_CONNECT_TIMEOUT"] = "7", "3"

    def run(**extra: str) -> list[str]:
        command = [sys.executable, "-c", script]
        out = subprocess.run(command, env=env | extra, capture_output=True, text=True, check=True)
        return out.stdout.split()

    assert run() == ["http://127.0.0.1:8765", "None", "aiohttp", "3.0", "7.0"]
    assert run(
        GPTALK_URL="http://h.test:1/", GPTALK_PROXY="http://p.test:2", GPTALK_TRANSPORT="httpx"
    ) == ["http://h.test:1", "http://p.test:2", "httpx", "3.0", "7.0"]


async def test_one_shared_client_per_loop_proxy_and_transport():
    a = upstream_http.client_get(proxy=None, transport="aiohttp")
    assert upstream_http.client_get(proxy=None, transport="aiohttp") is a
    b = upstream_http.client_get(proxy="http://127.0.0.1:9", transport="aiohttp")
    c = upstream_http.client_get(proxy=None, transport="httpx")
    assert len({id(a), id(b), id(c)}) == 3
    await aclose_clients()
    assert a.is_closed and b.is_closed and c.is_closed
    assert upstream_http.client_get(proxy=None, transport="aiohttp") is not a


async def test_a_process_start_makes_the_configured_client(settings):
    """The manager's start makes the client its answers will use, so that the
    first answer of a process does not build it (an SSL context, ~17 ms)."""
    from chat.generation.manager import GenerationManager

    settings.GPTALK_PROXY = "http://127.0.0.1:9"
    settings.GPTALK_TRANSPORT = "httpx"
    state = upstream_http._loop_state()
    assert not state.clients
    manager = GenerationManager()
    await manager.ensure_started()
    try:
        assert list(state.clients) == [("http://127.0.0.1:9", "httpx")]
        made = state.clients[("http://127.0.0.1:9", "httpx")]
        assert upstream_http.client_get(proxy="http://127.0.0.1:9", transport="httpx") is made
    finally:
        await manager.shutdown()
        await aclose_clients()


async def test_a_bad_transport_setting_does_not_stop_a_process_start(settings):
    from chat.generation.manager import GenerationManager

    settings.GPTALK_TRANSPORT = "curl"
    manager = GenerationManager()
    await manager.ensure_started()  # the first answer reports the setting instead
    try:
        assert manager.started and not upstream_http._loop_state().clients
    finally:
        await manager.shutdown()


def test_clients_are_not_shared_between_loops():
    async def get():
        client = upstream_http.client_get(proxy=None, transport="httpx")
        await aclose_clients()
        return client

    assert asyncio.run(get()) is not asyncio.run(get())


def test_clients_are_closed_when_their_loop_shuts_down():
    async def get():
        return upstream_http.client_get(proxy=None, transport="aiohttp")

    client = asyncio.run(get())  # no aclose_clients(): asyncio.run's shutdown closes it
    assert client.is_closed


def test_aiohttp_client_proxies_through_its_own_transport():
    from httpx_aiohttp import AiohttpTransport

    client = upstream_http.client_create(proxy="http://127.0.0.1:3128", transport="aiohttp")
    assert isinstance(client._transport, AiohttpTransport)
    assert str(client._transport.proxy.url) == "http://127.0.0.1:3128"
    assert not client._mounts  # nothing routes around the aiohttp transport
