"""Shared fixtures. The emulator fixtures live in tests/fixtures/emulator.py, the users
and their chat sockets (alice, bob, alice_ws) in tests/fixtures/sockets.py."""

import pytest

pytest_plugins = ["tests.fixtures.emulator", "tests.fixtures.sockets"]


@pytest.fixture(scope="session", autouse=True)
def _static_files():
    """pytest-django runs with DEBUG off, where `{% static %}` reads the manifest
    of collected files: collect them once for the session."""
    from django.test import override_settings

    from tests.fixtures.site import collected_static

    with override_settings(STATIC_ROOT=str(collected_static())):
        yield


@pytest.fixture(autouse=True)
def _fresh_gptalk_state():
    """The provider's token state and the cached provider rows are per process;
    every test starts logged out, with the rows read afresh."""
    from chat.providers.registry import provider_rows_forget
    from chat.upstream.gptalk import GPTalk

    GPTalk._auth = None
    GPTalk.used_times = 0
    provider_rows_forget()  # rows a rolled-back test created sent no signal
    yield
    GPTalk._auth = None
    GPTalk.used_times = 0
    provider_rows_forget()


@pytest.fixture
async def process_state():
    """For tests that run answers in-process: each test has its own event loop,
    so end that loop's answers, generation manager and HTTP clients with it."""
    yield
    from chat.generation import get_manager
    from chat.upstream.http import aclose_clients

    await get_manager().shutdown()
    await aclose_clients()


@pytest.fixture
def make_user(django_user_model):
    counter = {"n": 0}

    def make(username: str | None = None, **extra):
        counter["n"] += 1
        name = username or f"user{counter['n']}"
        return django_user_model.objects.create_user(
            username=name, password="correct horse battery staple", **extra
        )

    return make
