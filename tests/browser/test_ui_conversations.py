"""A chat UI people prefer, in Chromium against real daphne + emulator:
conversations (new, rename, pin, delete, search, title, export/import, share
links) and everywhere (themes, Russian, 360 px, keyboard).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import artifact_path
from tests.browser.helpers import (
    CLIPBOARD,
    CONVERSATION_URL,
    LABEL_FITS,
    RICH,
    answer,
    db,
    new_answer,
    send,
    wait_done,
)

pytestmark = pytest.mark.browser


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


@pytest.mark.parametrize("locale", ["en-US", "ru-RU"])
def test_usable_at_360_px(open_page, emulator, locale):
    page = open_page(
        viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
        locale=locale, extra_http_headers={"Accept-Language": locale},
    )
    expect(page.locator("html")).to_have_attribute("lang", locale[:2])
    expect(page.locator("#sidebar")).to_be_hidden()
    emulator.next(reply=RICH, interval_ms=2, chunk_chars=40)
    send(page, "Explain backoff on a phone")
    page.wait_for_url(CONVERSATION_URL)
    wait_done(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for selector in ("#prompt", "#send", "#menu-btn", "#model-picker", "#conv-settings-btn"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
    assert page.locator("#model-picker").evaluate(LABEL_FITS), "the model picker's label is cut"
    page.screenshot(path=artifact_path(f"mobile-360-chat-{locale}.png"))
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
