"""The admin as an operator uses it, in Chromium: a transcript with model output
that tries to run script (it must stay text), and the usage chart.

Screenshots: test-artifacts/browser/admin-*.png (copied to docs/screenshots/).
"""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import artifact_path
from tests.browser.helpers import answer, send, wait_done
from tests.fixtures.emulator import REPO_ROOT
from tests.fixtures.site import manage

pytestmark = pytest.mark.browser

XSS_REPLY = (
    "## Here is **Markdown**\n\n"
    'Inline HTML stays text: <img src=x onerror="document.title=\'pwned\'"> '
    'and <script>document.title="pwned"</script>\n\n'
    "[a javascript link](javascript:document.title='pwned')\n\n"
    "| model | tokens |\n|---|---|\n| gpt | 42 |\n\n"
    "```python\nprint('hello')\n```\n"
)

# Run in the site's database: an operator account, a regenerated and an edited
# branch in ada's conversation, and three weeks of answers of a few users.
SEED = """
import datetime as dt, random
from django.contrib.auth.models import User
from chat.models import Conversation, Message, UsageLimit
User.objects.filter(username='operator').update(is_staff=True, is_superuser=True)
ada = User.objects.get(username='ada')
talk = Conversation.objects.filter(owner=ada).order_by('id').first()
question = talk.messages.filter(role='user').order_by('id').first()
first = talk.messages.filter(parent=question).get()
earlier = Message.objects.create(conversation=talk, parent=question, role='assistant', status='stopped',
    content='An earlier answer, stopped hal', provider='GPTalk', model='GPTalk/gpt-3.5-turbo', duration_ms=900)
Message.objects.filter(pk=earlier.pk).update(created_at=first.created_at - dt.timedelta(seconds=5))
rng = random.Random(7)
today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
for name, scale in (('grace', 3), ('linus', 2), ('barbara', 1)):
    user = User.objects.create_user(name, password='x')
    UsageLimit.objects.create(user=user, daily_answer_chars=20000 * scale)
    chat = Conversation.objects.create(owner=user, title='Daily work of ' + name)
    for days_ago in range(21):
        for _ in range(rng.randint(0, 3 * scale)):
            chars = rng.randint(200, 3000)
            row = Message.objects.create(conversation=chat, role='assistant', content='a' * chars,
                model=rng.choice(['GPTalk/gpt-3.5-turbo', 'Ollama/llama3.1']), provider='GPTalk',
                prompt_chars=rng.randint(50, 900), answer_chars=chars, prompt_tokens=rng.randint(20, 300),
                answer_tokens=chars // 4, tokens_estimated=rng.random() < 0.5)
            Message.objects.filter(pk=row.pk).update(created_at=today - dt.timedelta(days=days_ago))
"""


def keep(name: str) -> None:
    """Copy a screenshot of this test into docs/screenshots/."""
    shutil.copyfile(artifact_path(name), REPO_ROOT / "docs" / "screenshots" / name)


@pytest.fixture(scope="module")
def operator(live_site):
    cookies = live_site.new_user("operator")
    return cookies


def test_transcript_renders_markdown_keeps_html_inert_and_is_recorded(open_page, live_site, emulator, operator):
    chat = open_page()
    emulator.next(reply=XSS_REPLY)
    send(chat, "Show me some markdown")
    wait_done(chat)
    emulator.next(fault="text_500")
    send(chat, "And now fail")
    wait_done(chat)
    expect(answer(chat)).to_contain_text("HTTP 500")
    manage("shell", "--no-imports", "-c", SEED, env=live_site.env)

    page = open_page("/admin/chat/conversation/?q=ada", cookies=operator)
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.get_by_role("link", name="Read").first.click()
    expect(page).to_have_url(re.compile(r"/admin/chat/conversation/\d+/transcript/$"))
    answers = page.locator(".tx-assistant")
    expect(answers).to_have_count(3)
    rendered = page.locator(".tx-assistant.tx-on-path .tx-body.markdown").first
    expect(rendered.locator("h2")).to_have_text("Here is Markdown")
    expect(rendered.locator("strong")).to_have_text("Markdown")
    expect(rendered.locator("table td").first).to_have_text("gpt")
    expect(rendered.locator(".codeblock pre code")).to_contain_text("print('hello')")
    # The model's HTML is shown as text: no element made of it, no script run.
    expect(rendered).to_contain_text('<img src=x onerror="document.title=\'pwned\'">')
    expect(rendered).to_contain_text("<script>")
    assert rendered.locator("img, script, [onerror]").count() == 0
    assert page.locator(".tx-list a[href^='javascript:']").count() == 0
    assert page.title() != "pwned" and "pwned" not in page.evaluate("document.title")
    # The regenerated answer's earlier version is marked as an alternative.
    stopped = page.locator(".tx-assistant.tx-off-path")
    expect(stopped).to_contain_text("version 1 of 2")
    expect(stopped.locator(".tx-status")).to_have_text("Stopped")
    failed = page.locator(".tx-assistant").last
    expect(failed.locator(".tx-error")).to_contain_text("HTTP 500")
    page.screenshot(path=artifact_path("admin-transcript.png"), full_page=True)
    keep("admin-transcript.png")

    # 360 px: nothing cut off, nothing to scroll sideways.
    page.set_viewport_size({"width": 360, "height": 740})
    overflow = page.evaluate(
        "Math.max(...[...document.querySelectorAll('.tx-msg')].map(el => el.getBoundingClientRect().right))"
    )
    assert overflow <= 360
    assert page.evaluate("(el => el.scrollWidth <= el.clientWidth)(document.querySelector('#transcript'))")
    page.screenshot(path=artifact_path("admin-transcript-360.png"))
    keep("admin-transcript-360.png")

    # The reading is recorded, and superusers see it.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(live_site.url + "/admin/chat/transcriptview/")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("operator")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("ada")


def test_usage_page_chart_and_tables(open_page, live_site, operator):
    page = open_page("/admin/", cookies=operator)
    page.get_by_role("link", name="Usage").first.click()
    expect(page.locator("h1")).to_contain_text("Usage")
    bars = page.locator(".usage-chart rect.answer")
    expect(bars).to_have_count(30)
    heights = [float(h) for h in bars.evaluate_all("els => els.map(el => el.getAttribute('height'))")]
    assert max(heights) > 50 and sum(1 for h in heights if h > 0) >= 15
    expect(page.locator("#usage-users tbody tr")).to_have_count(4)  # grace, linus, barbara, ada
    expect(page.locator("#usage-users tbody tr").first).to_contain_text("grace")
    expect(page.locator("#usage-models")).to_contain_text("Ollama/llama3.1")
    page.screenshot(path=artifact_path("admin-usage.png"), full_page=True)
    keep("admin-usage.png")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    lines = download.value.path().read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("day,user,provider,model,answers") and len(lines) > 20
