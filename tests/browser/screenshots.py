"""Drive a real session in Debian's Chromium and take the screenshots in docs/screenshots/.

A script, not a test:  .venv/bin/python tests/browser/screenshots.py [--out DIR]

It starts its own emulator and daphne (a throw-away SQLite database), signs up,
chats through the real websocket, and saves:
  login.png          the login page, 1280x800, light
  chat-light.png     a finished Markdown answer, 1280x800, light
  chat-dark.png      the same, dark
  chat-streaming.png an answer while it streams (Stop button), light
  chat-failed.png    a failed answer with its Retry button, light
  chat-mobile.png    the conversation at 360x780
  chat-mobile-menu.png  the sidebar drawer open at 360x780
  chat-settings-dark.png  the chat settings dialog (system prompt, share link, export), dark
  chat-search-dark.png  searching the chats, dark
  shared-light.png   the read-only page behind a share link
  account-light.png  the account page (defaults of new chats, password, export, delete), whole page
It also checks what it sees (URL replaced after the first answer, Markdown
rendered, raw HTML from the model shown as text, Retry works) and exits 1 with
a message when something is wrong.

Needs: apt-get install chromium; pip install playwright (never `playwright install`).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from playwright.sync_api import Page, expect, sync_playwright

from tests.fixtures.emulator import start_emulator
from tests.fixtures.site import SiteProcess, manage, site_env, sqlite_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "screenshot heron 4711"

RICH_REPLY = """Here is a small, dependency-free way to **retry an HTTP request** with exponential backoff:

```python
import random
import time

import httpx


def get_with_retry(url: str, attempts: int = 5) -> httpx.Response:
    delay = 0.5
    for attempt in range(attempts):
        try:
            return httpx.get(url, timeout=10).raise_for_status()
        except httpx.HTTPError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay + random.random() * delay)
            delay = min(delay * 2, 10)
```

The expected wait before attempt $n$ is $\\bar d_n = \\tfrac{3}{4}\\min(0.5 \\cdot 2^{n-1}, 10)$ seconds, so the total is bounded:

$$\\sum_{n=1}^{N} \\bar d_n \\le \\tfrac{3}{4}\\left(2^{N} - 1\\right) \\cdot 0.5$$

How the delays grow:

| attempt | base delay | with jitter |
|---:|---:|---|
| 1 | 0.5 s | 0.5–1 s |
| 2 | 1 s | 1–2 s |
| 3 | 2 s | 2–4 s |

A few notes:

1. Retry only **idempotent** requests (`GET`, `PUT`, `DELETE`).
2. Cap the delay so that a long outage does not mean a ten-minute wait.
3. See the [httpx docs](https://www.python-httpx.org/) for transports with built-in retries.

> Raw HTML from a model is shown as text: <b onclick="alert(1)">not bold</b>
"""

SHORT_REPLIES = [
    (
        "Plan a relaxed weekend in Lisbon",
        "Day one: Alfama in the morning, *pastéis de nata* in Belém, sunset at a miradouro.",
    ),
    (
        "What is the capital of Australia?",
        "**Canberra** — not Sydney, a common mix-up.",
    ),
    (
        "Write a haiku about herons",
        "Still grey silhouette —\nthe river holds its breath, then\na flash of silver.",
    ),
]


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def watch_console(page: Page, problems: list[str]) -> None:
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.keyboard.press("Enter")


def wait_answer_done(page: Page) -> None:
    expect(page.locator(".msg-assistant").last).to_have_attribute(
        "aria-busy", "false", timeout=20_000
    )
    expect(page.locator("#send")).to_have_attribute("aria-label", "Send")


def scroll_to_top(page: Page) -> None:
    page.evaluate("document.getElementById('scroller').scrollTop = 0")
    page.wait_for_timeout(100)


def signup(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def check(condition: bool, message: str, failures: list[str]) -> None:
    if not condition:
        failures.append(message)
        print("FAIL:", message)


def run(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        emulator = start_emulator(interval_ms=20, chunk_chars=5)
        env = site_env(
            database_url=sqlite_url(Path(tmp) / "db.sqlite3"),
            gptalk_url=emulator.url,
            CHAT_MESSAGES_PER_MINUTE="1000",
        )
        manage("migrate", "--noinput", env=env)
        site = SiteProcess(env=env)
        base = site.url
        try:
            with sync_playwright() as p:
                browser = launch(p)

                # --- login page --------------------------------------------------
                ctx = browser.new_context(
                    viewport={"width": 1280, "height": 800}, color_scheme="light"
                )
                page = ctx.new_page()
                watch_console(page, problems)
                page.goto(f"{base}/")
                check(
                    "/accounts/login/?next=/" in page.url,
                    f"anonymous / went to {page.url}",
                    failures,
                )
                page.screenshot(path=out / "login.png")

                # --- a real session ------------------------------------------------
                signup(page, base, "ada")
                for prompt, reply in SHORT_REPLIES:
                    page.click("#new-chat")
                    emulator.next(reply=reply)
                    send(page, prompt)
                    page.wait_for_url(re.compile(r".*/c/\d+/$"))
                    wait_answer_done(page)

                page.click("#new-chat")
                check(page.url == f"{base}/", "New chat did not go back to /", failures)
                emulator.next(reply=RICH_REPLY, interval_ms=25, chunk_chars=6)
                send(page, "How do I retry an HTTP request with backoff in Python?")
                page.wait_for_url(re.compile(r".*/c/\d+/$"))
                expect(page.locator("#send")).to_have_attribute("aria-label", "Stop")
                page.wait_for_function(
                    "() => document.querySelector('.msg-assistant .markdown')?.textContent.length > 300"
                )
                page.screenshot(path=out / "chat-streaming.png")
                wait_answer_done(page)
                rich_url = page.url

                answer = page.locator(".msg-assistant").last
                check(
                    answer.locator("pre code.language-python").count() == 1,
                    "no highlighted code block",
                    failures,
                )
                check(answer.locator("table").count() == 1, "no table", failures)
                check(
                    answer.locator("b").count() == 0,
                    "raw <b> from the model became HTML",
                    failures,
                )
                check(
                    "<b onclick" in answer.inner_text(),
                    "raw HTML not shown as text",
                    failures,
                )
                link = answer.locator("a[href^='https://www.python-httpx.org']")
                check(
                    link.get_attribute("rel") == "noopener noreferrer",
                    "link rel missing",
                    failures,
                )
                check(
                    link.get_attribute("target") == "_blank",
                    "link target missing",
                    failures,
                )
                sidebar_titles = page.locator("#conv-list a.conv").all_inner_texts()
                check(
                    len(sidebar_titles) == 4, f"sidebar has {sidebar_titles}", failures
                )
                check(
                    sidebar_titles[0].startswith("How do I retry"),
                    f"newest not first: {sidebar_titles}",
                    failures,
                )
                page.mouse.move(0, 0)
                scroll_to_top(page)
                page.screenshot(path=out / "chat-light.png")

                # A reload renders from the server and then from `history`.
                page.reload()
                expect(page.locator(".msg-assistant .markdown table")).to_have_count(1)

                # --- a failed answer and its Retry ------------------------------------
                page.click("#new-chat")
                emulator.next(fault="text_500")
                send(page, "This one will fail upstream")
                status = page.locator(".msg-status[data-status='failed']")
                expect(status).to_be_visible(timeout=20_000)
                page.mouse.move(0, 0)
                page.screenshot(path=out / "chat-failed.png")
                emulator.next(reply="Second time lucky: this answer **worked**.")
                status.locator("[data-action='retry']").click()
                expect(
                    page.locator(".msg-assistant .markdown strong", has_text="worked")
                ).to_be_visible(timeout=20_000)
                expect(page.locator(".msg-assistant .pager-label").last).to_have_text("2 / 2")
                ctx.close()

                # --- dark ---------------------------------------------------------------
                ctx = browser.new_context(
                    viewport={"width": 1280, "height": 800}, color_scheme="dark"
                )
                page = ctx.new_page()
                watch_console(page, problems)
                login(page, base, rich_url)
                wait_answer_done(page)
                scroll_to_top(page)
                page.screenshot(path=out / "chat-dark.png")
                page.click("#conv-settings-btn")
                page.fill("#system-prompt", "You are a concise senior Python engineer.")
                page.click("#share-create")
                expect(page.locator("#share-url")).to_be_visible()
                share_url = page.locator("#share-url").input_value()
                page.screenshot(path=out / "chat-settings-dark.png")
                page.keyboard.press("Escape")
                page.fill("#conv-search", "backoff")
                expect(page.locator("#search-list a.conv").first).to_be_visible()
                page.screenshot(path=out / "chat-search-dark.png")
                ctx.close()

                # --- the shared, read-only page (anonymous) ----------------------------------
                ctx = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
                page = ctx.new_page()
                watch_console(page, problems)
                page.goto(share_url)
                expect(page.locator(".markdown table")).to_have_count(1)
                page.screenshot(path=out / "shared-light.png")
                ctx.close()

                account_page(browser, base, rich_url, out, problems)

                # --- mobile ---------------------------------------------------------------
                ctx = browser.new_context(
                    viewport={"width": 360, "height": 780},
                    device_scale_factor=2,
                    is_mobile=True,
                    has_touch=True,
                    color_scheme="light",
                )
                page = ctx.new_page()
                watch_console(page, problems)
                login(page, base, rich_url)
                wait_answer_done(page)
                check(
                    not page.locator("#sidebar").is_visible(),
                    "sidebar visible on mobile",
                    failures,
                )
                page.screenshot(path=out / "chat-mobile.png")
                page.click("#menu-btn")
                expect(page.locator("#sidebar")).to_be_visible()
                page.wait_for_timeout(300)  # the slide-in transition
                page.screenshot(path=out / "chat-mobile-menu.png")
                page.keyboard.press("Escape")
                expect(page.locator("#sidebar")).to_be_hidden()
                width = page.evaluate("document.documentElement.scrollWidth")
                check(width <= 360, f"page is {width}px wide at 360px", failures)
                ctx.close()
                browser.close()
        finally:
            site.stop()
            emulator.stop()
    failures += problems
    for line in problems:
        print("FAIL:", line)
    print(f"screenshots in {out}")
    return 1 if failures else 0


def account_page(browser, base: str, next_url: str, out: Path, problems: list[str]) -> None:
    """The account page with custom instructions saved, light, as one long image."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
    page = ctx.new_page()
    watch_console(page, problems)
    login(page, base, next_url)
    page.click("#account-link")
    page.fill("#id_custom_instructions", "Answer briefly. Prefer Python examples with type hints.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".notice")).to_be_visible()
    page.mouse.move(0, 0)
    page.screenshot(path=out / "account-light.png", full_page=True)
    ctx.close()


def login(page: Page, base: str, next_url: str) -> None:
    page.goto(f"{base}/accounts/login/?next={next_url.removeprefix(base)}")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(next_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    sys.exit(run(args.out))


if __name__ == "__main__":
    main()
