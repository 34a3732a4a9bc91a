"""Fixtures of the browser suite: Debian's Chromium driven by Playwright against
real processes (the GPTalk emulator and daphne on a file SQLite database).

- `chromium` (package): one browser for the browser tests.
- `live_site` (module): one daphne per test module, migrated, with one signed-up
  user; `live_site.restart(kill=True)` crashes and restarts it on the same port.
- `open_page` (function): `open_page()` → a logged-in page in a fresh context;
  every page it opened is saved as a PNG in test-artifacts/browser/ after the
  test (pass or fail), and a JS error on any of them fails the test.
- `emulator` (function, from tests/fixtures/emulator.py): the shared emulator,
  reset before each test.

`make test` installs Chromium when it is missing; Playwright's own browser
download is never used (it cannot work offline).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.emulator import REPO_ROOT
from tests.fixtures.site import Browser, SiteProcess, manage, site_env, sqlite_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "browser heron 4711 passphrase"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
DESKTOP = {"width": 1280, "height": 800}
# Short timeouts so that fault tests end fast: a stalled upstream fails after
# READ_TIMEOUT seconds of silence.
READ_TIMEOUT = "2"


# Package scope, not session: Playwright's sync API keeps an event loop running
# in this thread while it is open, which the asyncio tests after this package
# could not share.
@pytest.fixture(scope="package")
def chromium():
    if not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. "
            "`make test` installs it (apt-get install chromium); or deselect them with -m 'not browser'.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class LiveSite:
    """A daphne process with its own database, and the user the tests log in as."""

    def __init__(self, *, env: dict[str, str], username: str) -> None:
        self.env = env
        self.username = username
        self.process = SiteProcess(env=env)
        self.url = self.process.url
        person = Browser(self.process)
        person.signup(username, PASSWORD)
        self.cookies = dict(person.client.cookies.items())
        person.close()

    @property
    def port(self) -> int:
        return self.process.port

    def restart(self, *, kill: bool = False, **extra_env: str) -> None:
        """Stop (SIGTERM) or crash (SIGKILL) the process and start it again on the same port."""
        if kill:
            self.process.kill()
        else:
            self.process.stop()
        self.env = {**self.env, **extra_env}
        self.process = SiteProcess(env=self.env, port=self.port)

    def new_user(self, username: str) -> dict[str, str]:
        """Sign up another person; their cookies."""
        person = Browser(self.process)
        person.signup(username, PASSWORD)
        cookies = dict(person.client.cookies.items())
        person.close()
        return cookies

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def live_site(emulator_server, tmp_path_factory) -> Iterator[LiveSite]:
    tmp = tmp_path_factory.mktemp("site")
    env = site_env(
        database_url=sqlite_url(tmp / "db.sqlite3"),
        gptalk_url=emulator_server.url,
        GPTALK_READ_TIMEOUT=READ_TIMEOUT,
        DJANGO_LOG_LEVEL="WARNING",
        # One person sends every message of a module: no per-minute limit in the way.
        CHAT_MESSAGES_PER_MINUTE="10000",
    )
    manage("migrate", "--noinput", env=env)
    site = LiveSite(env=env, username="ada")
    yield site
    site.stop()


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^\w.-]+", "_", nodeid.split("::", 1)[-1]).strip("_")[:120]


@pytest.fixture
def open_page(chromium, live_site, request) -> Iterator[Callable]:
    """open_page(path="/", viewport=..., color_scheme=..., cookies=..., setup=fn(page),
    **context options) → a Page at `path` (None: not loaded yet)."""
    contexts = []
    pages = []
    errors: list[str] = []

    def open_(
        path: str = "/",
        *,
        viewport: dict | None = None,
        color_scheme: str = "light",
        cookies: dict[str, str] | None = None,
        locale: str = "en-US",
        setup: Callable | None = None,
        **options,
    ):
        context = chromium.new_context(
            viewport=viewport or DESKTOP, color_scheme=color_scheme, locale=locale, **options
        )
        jar = live_site.cookies if cookies is None else cookies
        context.add_cookies([{"name": k, "value": v, "url": live_site.url} for k, v in jar.items()])
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
        contexts.append(context)
        pages.append(page)
        if setup is not None:
            setup(page)  # e.g. routes and init scripts, before the first load
        if path is not None:
            page.goto(live_site.url + path)
        return page

    yield open_

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = _artifact_name(request.node.nodeid)
    for i, page in enumerate(pages):
        if not page.is_closed():
            suffix = f"-{i}" if len(pages) > 1 else ""
            try:
                page.screenshot(path=ARTIFACTS / f"{name}{suffix}.png")
            except Exception:  # noqa: BLE001 - a screenshot must not hide the test's own result
                pass
    for context in contexts:
        try:
            context.close()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_until(predicate: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition outside the browser (the emulator's counters, the database)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def artifact_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
