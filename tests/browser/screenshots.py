"""Drive a real session in Debian's Chromium and take the screenshots in docs/screenshots/.

A script, not a test:  .venv/bin/python tests/browser/screenshots.py [--out DIR]

It starts its own emulator and daphne (a throw-away SQLite database), signs up,
adds a few older chats (so the sidebar shows its date groups), chats through
the real websocket, and saves (one function per scene):
  login.png          the login page, 1280x800, light
  chat-light.png     a finished Markdown answer, 1280x800, light
  chat-dark.png      the same, dark
  chat-streaming.png an answer while it streams (Stop button), light
  chat-failed.png    a failed answer with its Retry button, light
  chat-mobile.png    the conversation at 360x780
  chat-mobile-menu.png  the sidebar drawer open at 360x780
  chat-mobile-ru.png the conversation at 360x780 in Russian (the longest labels)
  chat-settings-dark.png  the chat settings dialog (system prompt, share link, export), dark
  chat-search-dark.png  searching the chats (what matched is marked), dark
  shared-light.png   the read-only page behind a share link
  account-light.png  the account page (defaults of new chats, password, reset address, export, delete), whole page
It also checks what it sees (URL replaced after the first answer, Markdown
rendered, raw HTML from the model shown as text, Retry works) and exits 1 with
a message when something is wrong.

Needs: apt-get install chromium; pip install playwright (never `playwright install`).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

# Run as a script, so the repository root must be importable before `tests.` is.
REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests.browser.helpers import LABEL_FITS  # noqa: E402
from tests.fixtures.emulator import start_emulator  # noqa: E402
from tests.fixtures.site import SiteProcess, manage, site_env, sqlite_url  # noqa: E402

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

The expected wait before attempt $n$ is $\\bar d_n = \\tfrac{3}{4}\\min(0.5 \\cdot 2^{n-1}, 10)$ seconds,
so the total is bounded:

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


# Older chats written straight into the database, so the sidebar shows its date groups.
HISTORY = [
    ("Reading list: birds of the Thames", timedelta(days=9), True),
    ("Sourdough starter schedule", timedelta(days=1), False),
    ("Compare SQLite and PostgreSQL for a small app", timedelta(days=4), False),
    ("Trip budget spreadsheet formulas", timedelta(days=18), False),
    ("Notes on the heron's nest", timedelta(days=75), False),
]
NEW_CHATS = len(SHORT_REPLIES) + 1


@dataclass
class Session:
    """What every scene needs: the browser, the site, the emulator, where to save."""

    browser: object
    base: str
    emulator: object
    database: Path
    out: Path
    failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rich_url: str = ""
    share_url: str = ""

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)
            print("FAIL:", message)

    def page(self, *, dark: bool = False, mobile: bool = False, locale: str = "en-US") -> Page:
        options: dict = {"viewport": {"width": 1280, "height": 800}, "locale": locale}
        if mobile:
            options = {
                "viewport": {"width": 360, "height": 780}, "locale": locale,
                "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
            }
        context = self.browser.new_context(color_scheme="dark" if dark else "light", **options)
        page = context.new_page()
        watch_console(page, self.problems)
        return page

    def shot(self, page: Page, name: str) -> None:
        page.screenshot(path=self.out / name)


def seed_history(database: Path, username: str) -> None:
    now = datetime.now(UTC)
    with sqlite3.connect(database) as conn:
        (owner,) = conn.execute("SELECT id FROM auth_user WHERE username=?", (username,)).fetchone()
        conn.executemany(
            "INSERT INTO chat_conversation (owner_id, title, model, system_prompt, pinned, created_at, updated_at)"
            " VALUES (?, ?, '', '', ?, ?, ?)",
            [
                (owner, title, pinned, (now - age).isoformat(), (now - age).isoformat())
                for title, age, pinned in HISTORY
            ],
        )


def scene_login(s: Session) -> Page:
    """login.png; then sign up in the same tab, with some history behind."""
    page = s.page()
    page.goto(f"{s.base}/")
    s.check("/accounts/login/?next=/" in page.url, f"anonymous / went to {page.url}")
    s.shot(page, "login.png")
    signup(page, s.base, "ada")
    seed_history(s.database, "ada")
    return page


def scene_short_chats(s: Session, page: Page) -> None:
    for prompt, reply in SHORT_REPLIES:
        page.click("#new-chat")
        s.emulator.next(reply=reply)
        send(page, prompt)
        page.wait_for_url(re.compile(r".*/c/\d+/$"))
        wait_answer_done(page)


def scene_streaming(s: Session, page: Page) -> None:
    """chat-streaming.png: the rich answer halfway, with its Stop button."""
    page.click("#new-chat")
    s.check(page.url == f"{s.base}/", "New chat did not go back to /")
    s.emulator.next(reply=RICH_REPLY, interval_ms=25, chunk_chars=6)
    send(page, "How do I retry an HTTP request with backoff in Python?")
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    expect(page.locator("#send")).to_have_attribute("aria-label", "Stop")
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant .markdown')?.textContent.length > 300"
    )
    s.shot(page, "chat-streaming.png")
    wait_answer_done(page)
    s.rich_url = page.url


def check_rich_answer(s: Session, page: Page) -> None:
    answer = page.locator(".msg-assistant").last
    expect(answer.locator(".katex-display")).to_have_count(1)  # KaTeX arrives on demand
    expect(answer.locator("code.language-python .hljs-keyword").first).to_be_visible()
    s.check(answer.locator("table").count() == 1, "no table")
    s.check(answer.locator("b").count() == 0, "raw <b> from the model became HTML")
    s.check("<b onclick" in answer.inner_text(), "raw HTML not shown as text")
    link = answer.locator("a[href^='https://www.python-httpx.org']")
    s.check(link.get_attribute("rel") == "noopener noreferrer", "link rel missing")
    s.check(link.get_attribute("target") == "_blank", "link target missing")


def scene_chat_light(s: Session, page: Page) -> None:
    """chat-light.png: the finished answer, the sidebar in its date groups."""
    # A reload renders from the server and then from `history` (and lists the older chats).
    page.reload()
    expect(page.locator(".msg-assistant .markdown table")).to_have_count(1)
    check_rich_answer(s, page)
    titles = page.locator("#conv-list a.conv").all_inner_texts()
    s.check(len(titles) == NEW_CHATS + len(HISTORY), f"sidebar has {titles}")
    today = page.locator("#conv-list .conv-group[data-group='today'] a.conv").all_inner_texts()
    s.check(today[:1] and today[0].startswith("How do I retry"), f"newest not first: {today}")
    headings = page.locator("#conv-list .conv-group-heading").all_inner_texts()
    s.check(headings[:3] == ["Pinned", "Today", "Yesterday"], f"sidebar groups: {headings}")
    page.mouse.move(0, 0)
    scroll_to_top(page)
    s.shot(page, "chat-light.png")


def scene_failed_and_retry(s: Session, page: Page) -> None:
    """chat-failed.png: a failed answer with Retry, which then works."""
    page.click("#new-chat")
    s.emulator.next(fault="text_500")
    send(page, "This one will fail upstream")
    status = page.locator(".msg-status[data-status='failed']")
    expect(status).to_be_visible(timeout=20_000)
    page.mouse.move(0, 0)
    s.shot(page, "chat-failed.png")
    s.emulator.next(reply="Second time lucky: this answer **worked**.")
    status.locator("[data-action='retry']").click()
    expect(page.locator(".msg-assistant .markdown strong", has_text="worked")).to_be_visible(timeout=20_000)
    expect(page.locator(".msg-assistant .pager-label").last).to_have_text("2 / 2")
    page.context.close()


def scene_dark(s: Session) -> Page:
    """chat-dark.png and chat-settings-dark.png (which makes the share link)."""
    page = s.page(dark=True)
    login(page, s.base, s.rich_url)
    wait_answer_done(page)
    scroll_to_top(page)
    s.shot(page, "chat-dark.png")
    page.click("#conv-settings-btn")
    page.fill("#system-prompt", "You are a concise senior Python engineer.")
    page.click("#share-create")
    expect(page.locator("#share-url")).to_be_visible()
    s.share_url = page.locator("#share-url").input_value()
    s.shot(page, "chat-settings-dark.png")
    page.keyboard.press("Escape")
    return page


def scene_search(s: Session, page: Page) -> None:
    """chat-search-dark.png: what matched is marked."""
    page.fill("#conv-search", "backoff")
    hit = page.locator("#search-list a.conv").first
    expect(hit.locator("mark").first).to_have_text(re.compile("backoff", re.I))
    s.shot(page, "chat-search-dark.png")
    page.context.close()


def scene_shared(s: Session) -> None:
    """shared-light.png: the read-only page behind the share link, anonymous."""
    page = s.page()
    page.goto(s.share_url)
    expect(page.locator(".markdown table")).to_have_count(1)
    s.shot(page, "shared-light.png")
    page.context.close()


def scene_account(s: Session) -> None:
    """account-light.png: the account page with custom instructions saved, as one long image."""
    page = s.page()
    login(page, s.base, s.rich_url)
    page.click("#account-link")
    page.fill("#id_custom_instructions", "Answer briefly. Prefer Python examples with type hints.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".notice")).to_be_visible()
    page.mouse.move(0, 0)
    page.screenshot(path=s.out / "account-light.png", full_page=True)
    page.context.close()


def scene_mobile(s: Session) -> None:
    """chat-mobile.png and chat-mobile-menu.png at 360 px; chat-mobile-ru.png."""
    page = s.page(mobile=True)
    login(page, s.base, s.rich_url)
    wait_answer_done(page)
    s.check(not page.locator("#sidebar").is_visible(), "sidebar visible on mobile")
    s.shot(page, "chat-mobile.png")
    page.click("#menu-btn")
    expect(page.locator("#sidebar")).to_be_visible()
    page.wait_for_timeout(300)  # the slide-in transition
    s.shot(page, "chat-mobile-menu.png")
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).to_be_hidden()
    width = page.evaluate("document.documentElement.scrollWidth")
    s.check(width <= 360, f"page is {width}px wide at 360px")
    s.check(page.locator("#model-picker").evaluate(LABEL_FITS), "the model picker's label is cut at 360px")
    page.context.close()
    # The longer Russian labels in the same top bar (Accept-Language: ru).
    page = s.page(mobile=True, locale="ru-RU")
    login(page, s.base, s.rich_url)
    expect(page.locator(".msg-assistant").last).to_have_attribute("aria-busy", "false", timeout=20_000)
    s.check(page.locator("#model-picker").evaluate(LABEL_FITS), "the model picker's label is cut at 360px in Russian")
    s.shot(page, "chat-mobile-ru.png")
    page.context.close()


def run_scenes(s: Session) -> None:
    page = scene_login(s)
    scene_short_chats(s, page)
    scene_streaming(s, page)
    scene_chat_light(s, page)
    scene_failed_and_retry(s, page)
    scene_search(s, scene_dark(s))
    scene_shared(s)
    scene_account(s)
    scene_mobile(s)


def run(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "db.sqlite3"
        emulator = start_emulator(interval_ms=20, chunk_chars=5)
        env = site_env(
            database_url=sqlite_url(database), gptalk_url=emulator.url, CHAT_MESSAGES_PER_MINUTE="1000"
        )
        manage("migrate", "--noinput", env=env)
        site = SiteProcess(env=env)
        try:
            with sync_playwright() as p:
                browser = launch(p)
                session = Session(browser=browser, base=site.url, emulator=emulator, database=database, out=out)
                run_scenes(session)
                browser.close()
        finally:
            site.stop()
            emulator.stop()
    for line in session.problems:
        print("FAIL:", line)
    print(f"screenshots in {out}")
    return 1 if session.failures or session.problems else 0


def account_page(browser, base: str, next_url: str, out: Path, problems: list[str]) -> None:
    """The account page with custom instructions saved, light, as one long image."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
    page = ctx.new_page()
    watch_console(page, problems)
    login(page, base, next_url)
    page.click("#account-link")
    page.fill("#id_custom_instructions", "Answer briefly. Prefer Python examples with type hints.")
    page.get_by_role("button", name="Save", exact=True).click()
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
