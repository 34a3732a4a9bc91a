"""A page that stays light as history grows, seen in Chromium on a site with
DEBUG off: hashed, gzipped, long-cached static files; KaTeX and highlight.js
grammars fetched only when an answer needs them; the sidebar grouped by date,
loaded in pages as it scrolls, and search that marks what matched.

The site of this module runs as in production (DEBUG off, collectstatic's
hashed files served by whitenoise), so every test here also checks that the
ES modules still find each other under their hashed names.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import READ_TIMEOUT, LiveSite, artifact_path
from tests.browser.helpers import CONVERSATION_URL, answer, db, send, wait_done
from tests.fixtures.site import manage, site_env, sqlite_url

pytestmark = pytest.mark.browser

COLD_PAGE_BUDGET = 200 * 1024  # bytes on the wire for a cold load of the chat page
HASHED = re.compile(r"/static/.+\.[0-9a-f]{12}\.[A-Za-z0-9]+$")


@pytest.fixture(scope="module")
def live_site(emulator_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    env = site_env(
        database_url=sqlite_url(tmp / "db.sqlite3"),
        gptalk_url=emulator_server.url,
        GPTALK_READ_TIMEOUT=READ_TIMEOUT,
        DJANGO_LOG_LEVEL="WARNING",
        CHAT_MESSAGES_PER_MINUTE="10000",
        # Production, over plain http on the loopback.
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_COOKIES="false",
    )
    manage("migrate", "--noinput", env=env)
    site = LiveSite(env=env, username="grace")
    yield site
    site.stop()


def seed_conversations(live_site, titles_and_ages: list[tuple[str, timedelta]], *, pinned=()) -> None:
    """Conversations of the module's user written straight into its database."""
    now = datetime.now(UTC)
    with db(live_site) as conn:
        (owner,) = conn.execute(
            "SELECT id FROM auth_user WHERE username=?", (live_site.username,)
        ).fetchone()
        conn.executemany(
            "INSERT INTO chat_conversation (owner_id, title, model, system_prompt, pinned, created_at, updated_at)"
            " VALUES (?, ?, '', '', ?, ?, ?)",
            [
                (owner, title, title in pinned, (now - age).isoformat(), (now - age).isoformat())
                for title, age in titles_and_ages
            ],
        )


def forget_conversations(live_site) -> None:
    with db(live_site) as conn:
        conn.execute("DELETE FROM chat_message")
        conn.execute("DELETE FROM chat_conversation")


# ---- static files ---------------------------------------------------------------------


def test_cold_chat_page_is_small_hashed_compressed_and_cached_for_a_year(open_page, live_site):
    forget_conversations(live_site)
    seed_conversations(live_site, [(f"Chat about herons {i}", timedelta(hours=i)) for i in range(5)])
    requests = []
    page = open_page(None, setup=lambda p: p.on("requestfinished", lambda r: requests.append(r)))
    page.goto(live_site.url + "/")
    expect(page.locator("#conv-list a.conv")).to_have_count(5)
    page.wait_for_load_state("networkidle")

    static = [r for r in requests if "/static/" in r.url]
    assert static, "the page loaded no static files"
    wire = sum(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"] for r in requests)
    assert wire <= COLD_PAGE_BUDGET, f"{wire} bytes on the wire: {[(r.url, r.sizes()) for r in requests]}"
    # Nothing for math or code colours on a page that has neither.
    assert not [r.url for r in requests if "katex" in r.url or ("/highlight/" in r.url and "css" not in r.url)]
    for request in static:
        response = request.response()
        assert HASHED.search(request.url), f"not a hashed name: {request.url}"
        assert response.status == 200, request.url
        assert "immutable" in response.headers["cache-control"], request.url
        max_age = int(re.search(r"max-age=(\d+)", response.headers["cache-control"]).group(1))
        assert max_age >= 365 * 24 * 3600, request.url
        if re.search(r"\.(js|mjs|css)$", request.url):
            assert response.headers.get("content-encoding") == "gzip", request.url
    # A plain (unhashed) name may change with the next release: never cached for long.
    plain = page.request.get(live_site.url + "/static/chat/js/main.js")
    assert plain.ok and "immutable" not in plain.headers["cache-control"]
    assert int(re.search(r"max-age=(\d+)", plain.headers["cache-control"]).group(1)) <= 60
    # The whole app ran from hashed modules: the socket connected and the composer works.
    page.fill("#prompt", "hello")
    expect(page.locator("#send")).to_be_enabled()


def test_math_and_code_colours_load_when_an_answer_needs_them(open_page, emulator, live_site):
    requests = []
    page = open_page(None, setup=lambda p: p.on("requestfinished", lambda r: requests.append(r)))
    page.goto(live_site.url + "/")
    emulator.next(reply="Plain words, no math and no code.")
    send(page, "Say something plain")
    page.wait_for_url(CONVERSATION_URL)
    wait_done(page)
    assert not [r.url for r in requests if "katex" in r.url or "/languages/" in r.url]

    emulator.next(reply="Euler: $e^{i\\pi} + 1 = 0$\n\n```python\ndef heron():\n    return 1\n```\n")
    send(page, "Math and code, please")
    body = answer(page).locator(".markdown")
    expect(body.locator(".math-inline .katex")).to_have_count(1)
    expect(body.locator("code.language-python .hljs-keyword").first).to_have_text("def")
    # KaTeX's stylesheet arrived too (its fonts lay the formula out).
    font = body.locator(".katex").first.evaluate("el => getComputedStyle(el).fontFamily")
    assert "KaTeX_Main" in font
    fetched = [r.url for r in requests]
    assert any(re.search(r"/vendor/katex/katex\.min\.[0-9a-f]{12}\.js$", u) for u in fetched), fetched
    assert any(re.search(r"/vendor/katex/katex\.min\.[0-9a-f]{12}\.css$", u) for u in fetched), fetched
    grammars = [u for u in fetched if "/languages/" in u]
    assert len(grammars) == 1 and "/python.min." in grammars[0], grammars


# ---- the sidebar: groups, pages, search ------------------------------------------------


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def dated_history(now: datetime) -> list[tuple[str, timedelta]]:
    """Two chats in each recent group, then 121 older ones over several months (UTC days)."""
    midnight = day_start(now)
    at = {
        "today": midnight + (now - midnight) / 2,
        "yesterday": midnight - timedelta(hours=12),
        "week": midnight - timedelta(days=3),
        "month": midnight - timedelta(days=20),
    }
    history = [(f"{group} {i}", now - when + timedelta(minutes=i)) for group, when in at.items() for i in range(2)]
    history += [(f"older {i:03}", now - midnight + timedelta(days=40 + i)) for i in range(121)]
    return history


def group_headings(page) -> list[str]:
    return page.locator("#conv-list .conv-group-heading").all_inner_texts()


def scroll_sidebar_to_end(page) -> None:
    page.locator("#conv-scroll").evaluate("el => { el.scrollTop = el.scrollHeight; }")


def test_sidebar_is_grouped_by_date_and_loads_pages_as_it_scrolls(open_page, live_site):
    forget_conversations(live_site)
    now = datetime.now(UTC)
    history = dated_history(now) + [("Pinned heron notes", timedelta(days=70))]
    seed_conversations(live_site, history, pinned={"Pinned heron notes"})
    page = open_page("/", timezone_id="UTC")
    links = page.locator("#conv-list a.conv")
    expect(links).to_have_count(50)  # the first page only
    months = sorted(
        {(now - age).strftime("%Y-%m") for title, age in history if title.startswith("older")}, reverse=True
    )
    first_month = datetime.strptime(months[0], "%Y-%m").strftime("%B %Y")
    assert group_headings(page)[:6] == [
        "Pinned", "Today", "Yesterday", "Previous 7 days", "Previous 30 days", first_month,
    ]
    expect(page.locator("#conv-list .conv-group[data-group='today'] a.conv")).to_have_text(["today 0", "today 1"])

    scroll_sidebar_to_end(page)
    expect(links).to_have_count(100)
    scroll_sidebar_to_end(page)
    expect(links).to_have_count(len(history))
    expect(page.locator("#conv-more")).to_be_hidden()
    ids = links.evaluate_all("els => els.map(a => a.dataset.id)")
    assert len(set(ids)) == len(history)  # no chat twice across pages
    titles = links.all_inner_texts()
    assert titles[-1] == "older 120" and titles[0] == "Pinned heron notes"
    expected_months = [datetime.strptime(m, "%Y-%m").strftime("%B %Y") for m in months]
    assert group_headings(page)[5:] == expected_months


def test_sidebar_groups_in_russian(open_page, live_site):
    forget_conversations(live_site)
    seed_conversations(live_site, dated_history(datetime.now(UTC))[:8] + [("Старый чат", timedelta(days=400))],
                       pinned={"today 0"})
    page = open_page("/", locale="ru-RU", timezone_id="UTC")
    expect(page.locator("#conv-list a.conv")).to_have_count(9)
    headings = group_headings(page)
    assert headings[:5] == ["Закреплённые", "Сегодня", "Вчера", "Предыдущие 7 дней", "Предыдущие 30 дней"]
    assert re.fullmatch(r"[А-ЯЁ][а-яё]+ \d{4} г\.", headings[5]), headings


def test_search_marks_what_matched_as_text(open_page, emulator, live_site):
    forget_conversations(live_site)
    page = open_page("/")
    emulator.next(reply="The grey HERON waits; a <b>heron</b> never hurries.")
    send(page, "Tell me about the heron <img src=x onerror=alert(1)>")
    page.wait_for_url(CONVERSATION_URL)
    wait_done(page)
    page.fill("#conv-search", "heron")
    hit = page.locator("#search-list a.conv").first
    expect(hit).to_be_visible()
    marks = hit.locator("mark")
    expect(marks.first).to_be_visible()
    assert {m.lower() for m in marks.all_inner_texts()} == {"heron"}
    # Markup in titles and messages stays text: no element but <mark> inside a hit.
    assert hit.locator(":scope *:not(span):not(mark)").count() == 0
    assert "<img" in hit.inner_text() or "<b>" in hit.inner_text()
    page.screenshot(path=str(artifact_path("search-marks.png")))


def test_an_old_chat_with_a_new_message_moves_to_today(open_page, emulator, live_site):
    forget_conversations(live_site)
    seed_conversations(live_site, [("Fresh chat", timedelta(minutes=5)), ("Lonely old chat", timedelta(days=400))])
    page = open_page("/", timezone_id="UTC")
    old_group = page.locator("#conv-list .conv-group", has=page.locator("a.conv", has_text="Lonely old chat"))
    expect(old_group).to_have_count(1)
    old_key = old_group.get_attribute("data-group")
    assert re.fullmatch(r"\d{4}-\d{2}", old_key)
    page.locator("#conv-list a.conv", has_text="Lonely old chat").click()
    emulator.next(reply="Back again.")
    send(page, "Picking this up again")
    wait_done(page)
    today = page.locator("#conv-list .conv-group[data-group='today'] a.conv")
    expect(today).to_have_text(["Lonely old chat", "Fresh chat"])
    expect(page.locator(f"#conv-list .conv-group[data-group='{old_key}']")).to_have_count(0)
