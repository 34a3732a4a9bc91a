"""A limit reached is said plainly in the page, and nothing typed or saved is lost."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import answer, send, wait_done
from tests.fixtures.site import manage

pytestmark = pytest.mark.browser


def test_a_user_at_their_limit_sees_why_and_keeps_what_they_typed(open_page, live_site, emulator):
    cookies = live_site.new_user("hasty")
    manage(
        "shell", "--no-imports", "-c",
        "from django.contrib.auth.models import User; from chat.models import UsageLimit;"
        "UsageLimit.objects.create(user=User.objects.get(username='hasty'), messages_per_minute=1)",
        env=live_site.env,
    )
    page = open_page(cookies=cookies)
    emulator.next(reply="The one answer you get this minute.")
    send(page, "First question")
    wait_done(page)
    expect(answer(page).locator(".markdown")).to_have_text("The one answer you get this minute.")
    send(page, "Second question, too soon")
    alert = page.locator("#alert")
    expect(alert).to_contain_text("too fast")
    expect(alert).to_contain_text("1 a minute")
    # What was typed is back in the box, and the first exchange is intact.
    expect(page.locator("#prompt")).to_have_value("Second question, too soon")
    expect(answer(page).locator(".markdown")).to_have_text("The one answer you get this minute.")
    expect(page.locator(".msg-user")).to_have_count(1)
