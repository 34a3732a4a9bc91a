"""A chat UI people prefer, in Chromium against real daphne + emulator: reading
answers (Markdown, code, math, copy, a smooth 20 KB stream, untrusted output) and
working with answers (regenerate, edit and resend, branches, system prompt, model
picker). Conversations and the whole page: test_ui_conversations.py.
"""

from __future__ import annotations

import json
import re
import statistics

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import artifact_path
from tests.browser.helpers import CLIPBOARD, CONVERSATION_URL, RICH, answer, db, new_answer, send, wait_done

pytestmark = pytest.mark.browser


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
[entity](&#106;avascript:window.__pwned=19)
[data](data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0yMDwvc2NyaXB0Pg==)
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
