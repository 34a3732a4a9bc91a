"""What a new user meets around the chat, in Chromium against real daphne +
emulator: editing in place without the page sliding away, the language switch
and the system prompt keeping the address, the branch being read surviving a
reload, plain titles, right-to-left text, the pin marker, contrast and focus,
the model under each answer, and the account page (defaults, export, deletion,
password reset without mail)."""

from __future__ import annotations

import io
import json
import re
import zipfile

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, artifact_path
from tests.browser.helpers import CONVERSATION_URL, answer, db, new_answer, wait_done

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


def scroll_offsets(page) -> dict:
    """Everything that could scroll the app out of view, and where the app is."""
    return page.evaluate(
        """() => ({
          doc: document.scrollingElement.scrollTop,
          body: document.body.scrollTop,
          app: document.getElementById('app').scrollTop,
          main: document.getElementById('main').scrollTop,
          appTop: Math.round(document.getElementById('app').getBoundingClientRect().top),
          mainTop: Math.round(document.getElementById('main').getBoundingClientRect().top),
        })"""
    )


def in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] and box["x"] >= 0 \
        and box["x"] + box["width"] <= size["width"]


# ---- 1. edit and resend in place ----------------------------------------------------


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_editing_a_message_never_scrolls_the_app_away(open_page, emulator, device):
    page = open_page(**(PHONE if device == "phone" else {}))
    long_reply = "\n\n".join(f"Paragraph {i} about herons and their patience." for i in range(40))
    new_answer(page, emulator, "What is a heron?", long_reply, interval_ms=1, chunk_chars=400)
    new_answer(page, emulator, "And an egret?", long_reply, interval_ms=1, chunk_chars=400)
    before = scroll_offsets(page)
    first = page.locator(".msg-user").first
    first.locator(".bubble").scroll_into_view_if_needed()
    first.hover() if device == "desktop" else first.locator(".bubble").tap()
    first.locator("[data-action='edit']").click()
    editor = first.locator(".msg-edit-input")
    expect(editor).to_be_focused()
    editing = scroll_offsets(page)
    assert (editing["doc"], editing["body"], editing["app"], editing["main"]) == (0, 0, 0, 0), editing
    assert (editing["appTop"], editing["mainTop"]) == (before["appTop"], before["mainTop"]), editing
    for name in ("Cancel", "Save and send"):
        assert in_viewport(page, first.get_by_role("button", name=name)), name
    assert in_viewport(page, editor)
    page.screenshot(path=artifact_path(f"edit-in-place-{device}.png"))
    editor.press("Escape")
    expect(editor).to_be_hidden()
    assert scroll_offsets(page) == before  # the layout is where it was, to the pixel
    expect(page.locator("#prompt")).to_be_visible()


# ---- 4 and 6: the address follows what is on screen ----------------------------------


def test_changing_the_language_in_an_open_chat_stays_in_that_chat(open_page, emulator):
    page = open_page()
    new_answer(page, emulator, "Stay here please", "Staying.")
    url = page.url  # set by the page itself (history.replaceState), not loaded
    page.locator("#lang-side").select_option("ru")
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    assert page.url == url
    expect(page.locator(".msg-user .bubble")).to_have_text("Stay here please")
    page.locator("#lang-side").select_option("en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert page.url == url


def test_a_system_prompt_set_first_gives_the_new_chat_its_address(open_page, emulator):
    page = open_page()
    page.click("#conv-settings-btn")
    page.fill("#system-prompt", "Answer in haiku.")
    page.click("#settings-save")
    page.wait_for_url(CONVERSATION_URL)
    conversation_id = int(re.search(r"/c/(\d+)/$", page.url).group(1))
    expect(page.locator(f'.conv[data-id="{conversation_id}"]')).to_have_attribute("aria-current", "page")
    page.reload()
    page.click("#conv-settings-btn")
    expect(page.locator("#system-prompt")).to_have_value("Answer in haiku.")
    page.keyboard.press("Escape")
    # Again from an open chat, through New chat (no reload in between).
    page.click("#new-chat")
    page.wait_for_url(re.compile(r".*/$"))
    page.click("#conv-settings-btn")
    page.fill("#system-prompt", "Answer in limericks.")
    page.click("#settings-save")
    page.wait_for_url(re.compile(rf".*/c/(?!{conversation_id}/)\d+/$"))
    expect(page.locator("#conv-title")).to_have_text("Untitled chat")


# ---- 7. the branch being read survives a reload -----------------------------------------


def test_a_reload_shows_the_branch_being_read(open_page, emulator):
    page = open_page()
    new_answer(page, emulator, "Name a bird", "A heron.")
    emulator.next(reply="An egret.")
    answer(page).hover()
    answer(page).locator(".msg-actions [data-action='regenerate']").click()
    expect(answer(page).locator(".markdown")).to_have_text("An egret.")
    wait_done(page)
    pager = answer(page).locator(".pager")
    pager.locator("[data-action='prev']").click()
    expect(pager.locator(".pager-label")).to_have_text("1 / 2")
    page.reload()
    expect(answer(page).locator(".markdown")).to_have_text("A heron.")
    expect(answer(page).locator(".pager .pager-label")).to_have_text("1 / 2")
    # A new answer is shown at once, on its own (newest) branch, and stays so.
    new_answer(page, emulator, "And another?", "A stork.")
    page.reload()
    expect(answer(page).locator(".markdown")).to_have_text("A stork.")


# ---- 8. titles are plain text -----------------------------------------------------------


def test_titles_show_no_markdown(open_page, emulator):
    page = open_page()
    new_answer(page, emulator, "Hello! Can you show me **markdown** and `code`?", "Sure: **bold**.")
    plain = "Hello! Can you show me markdown and code?"
    expect(page.locator("#conv-title")).to_have_text(plain)
    expect(page.locator(".conv[aria-current='page']")).to_have_text(plain)
    assert page.title().startswith(plain)
    page.reload()
    expect(page.locator("#conv-title")).to_have_text(plain)


# ---- 9. HEAD and the favicon -----------------------------------------------------------------


def test_head_and_favicon(live_site):
    with httpx.Client(base_url=live_site.url, trust_env=False, cookies=live_site.cookies) as client:
        assert client.head("/").status_code == 200
        icon = client.get("/favicon.ico", follow_redirects=True)
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    with httpx.Client(base_url=live_site.url, trust_env=False) as anonymous:
        assert anonymous.head("/", follow_redirects=True).status_code == 200


# ---- 10. right to left, the pin marker, contrast, focus -----------------------------------------


def test_arabic_text_lays_out_right_to_left(open_page, emulator):
    page = open_page()
    new_answer(page, emulator, "مرحبا، كيف حالك؟", "أنا بخير، شكرا لك.")
    for selector in (".msg-user .msg-text", ".msg-assistant .msg-text", "#conv-title", ".conv[aria-current='page']"):
        assert page.locator(selector).first.evaluate("el => getComputedStyle(el).direction") == "rtl", selector
    new_answer(page, emulator, "And in English?", "Fine, thanks.")
    expect(answer(page).locator(".msg-text")).to_have_text("Fine, thanks.")
    assert answer(page).locator(".msg-text").evaluate("el => getComputedStyle(el).direction") == "ltr"


def test_the_pin_marker_is_drawn_and_spoken(open_page, emulator):
    page = open_page()
    new_answer(page, emulator, "Pin me", "Pinned.")
    link = page.locator(".conv[aria-current='page']")
    link.locator("xpath=..").locator(".conv-menu-btn").click()
    page.locator("#conv-menu [data-menu='pin']").click()
    expect(link).to_have_class(re.compile(r"\bconv-pinned\b"))
    marker = link.evaluate(
        """el => { const s = getComputedStyle(el, '::before');
                   return { content: s.content, mask: s.maskImage || s.webkitMaskImage, width: s.width }; }"""
    )
    assert "📌" not in marker["content"] and marker["mask"].startswith("url(") and marker["width"] == "12px", marker
    expect(link).to_have_accessible_name(re.compile(r"^Pinned: Pin me"))
    link.screenshot(path=artifact_path("pinned-marker.png"))


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _rgb(css: str) -> tuple[float, float, float]:
    parts = [float(x) for x in re.findall(r"[\d.]+", css)[:3]]
    return parts[0], parts[1], parts[2]


def test_dark_search_placeholder_has_enough_contrast(open_page):
    page = open_page(color_scheme="dark")
    colours = page.locator("#conv-search").evaluate(
        """el => ({ text: getComputedStyle(el, '::placeholder').color,
                    opacity: getComputedStyle(el, '::placeholder').opacity,
                    background: getComputedStyle(el.closest('.search')).backgroundColor })"""
    )
    assert float(colours["opacity"]) == 1, colours
    light, dark = sorted((_luminance(_rgb(colours["text"])), _luminance(_rgb(colours["background"]))), reverse=True)
    assert (light + 0.05) / (dark + 0.05) >= 4.5, colours


def test_the_import_focus_ring_is_drawn_around_the_import_control(open_page):
    page = open_page()
    page.locator("#new-chat").focus()
    for _ in range(30):  # Tab through the sidebar to the file input, as a keyboard user does
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "import-file":
            break
    assert page.evaluate("document.activeElement.id") == "import-file"
    ring = page.locator(".import-btn").evaluate("el => getComputedStyle(el).outlineStyle")
    language = page.locator("#lang-side").evaluate("el => getComputedStyle(el.closest('form')).outlineStyle")
    assert (ring, language) == ("solid", "none")


# ---- each answer says which model wrote it ------------------------------------------------------


def test_each_answer_shows_its_model(open_page, emulator, live_site):
    page = open_page()
    new_answer(page, emulator, "Who wrote this?", "A model did.")
    with db(live_site) as conn:
        (model,) = conn.execute(
            "SELECT model FROM chat_message WHERE role='assistant' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert model
    label = answer(page).locator(".msg-model")
    expect(label).to_be_visible()
    expect(label.locator(".msg-model-name")).to_have_text(model)
    page.reload()
    expect(answer(page).locator(".msg-model .msg-model-name")).to_have_text(model)


# ---- the account page -----------------------------------------------------------------------------


def test_account_defaults_apply_to_new_chats(open_page, emulator, live_site):
    page = open_page("/accounts/")
    models = httpx.get(live_site.url + "/api/models/", cookies=live_site.cookies, trust_env=False).json()
    choice = models[-1]["id"]
    page.select_option("#id_default_model", choice)
    page.fill("#id_custom_instructions", "Always answer in one sentence.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("Saved")
    page.screenshot(path=artifact_path("account-page.png"), full_page=True)
    page.goto(live_site.url + "/")
    expect(page.locator("#model-picker")).to_have_value(choice)
    page.click("#conv-settings-btn")
    expect(page.locator("#system-prompt")).to_have_value("Always answer in one sentence.")
    page.keyboard.press("Escape")
    new_answer(page, emulator, "Tell me about herons", "They are birds.")
    assert "Always answer in one sentence." in emulator.stats()["last_prompts"][-1]
    expect(answer(page).locator(".msg-model-name")).to_contain_text(choice.split("/", 1)[-1])
    # Back to the site's defaults for the other tests of this module.
    page.goto(live_site.url + "/accounts/")
    page.select_option("#id_default_model", "")
    page.fill("#id_custom_instructions", "")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("Saved")


def test_export_all_my_data_downloads_one_zip(open_page, emulator, live_site):
    page = open_page()
    new_answer(page, emulator, "Export this one", "Exported.")
    page.goto(live_site.url + "/accounts/")
    with page.expect_download() as info:
        page.click("#account-export")
    archive = zipfile.ZipFile(io.BytesIO(info.value.path().read_bytes()))
    names = archive.namelist()
    with db(live_site) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM chat_conversation c JOIN auth_user u ON u.id = c.owner_id WHERE u.username = ?",
            (live_site.username,),
        ).fetchone()
    assert len([n for n in names if n.endswith(".md")]) == count
    assert len([n for n in names if n.endswith(".json") and n.startswith("json/")]) == count
    assert any("Exported." in archive.read(n).decode() for n in names if n.endswith(".md"))
    assert json.loads(archive.read("account.json"))["username"] == live_site.username


def test_delete_my_account_in_russian(open_page, emulator, live_site):
    cookies = live_site.new_user("leaving")
    page = open_page(cookies=cookies, locale="ru-RU", extra_http_headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    new_answer(page, emulator, "Удали меня потом", "Хорошо.")
    page.click("#account-link")
    expect(page.locator("h1")).to_have_text("Ваш аккаунт")
    page.fill("#id_delete-password", "wrong password")
    page.get_by_role("button", name="Удалить мой аккаунт").click()
    expect(page.locator("#delete .errorlist")).to_be_visible()
    page.fill("#id_delete-password", PASSWORD)
    page.get_by_role("button", name="Удалить мой аккаунт").click()
    page.wait_for_url(re.compile(r".*/accounts/login/$"))
    expect(page.locator(".notice")).to_be_visible()
    with db(live_site) as conn:
        assert conn.execute("SELECT COUNT(*) FROM auth_user WHERE username='leaving'").fetchone() == (0,)
        assert conn.execute(
            "SELECT COUNT(*) FROM chat_message m LEFT JOIN chat_conversation c ON c.id = m.conversation_id"
            " WHERE c.id IS NULL"
        ).fetchone() == (0,)
    page.goto(live_site.url + "/")
    page.wait_for_url(re.compile(r".*/accounts/login/"))


def test_password_reset_without_mail_says_to_ask_an_administrator(open_page, live_site):
    page = open_page("/accounts/login/", cookies={})
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.locator("#reset-no-mail")).to_contain_text("Ask an administrator")
    expect(page.locator("input[name='email']")).to_have_count(0)


def test_logging_out_in_one_tab_signs_the_other_tab_out_at_once(open_page, live_site):
    """The other tab's socket is closed by the server (the session ended), and
    the page says so with a login link, instead of chatting on unauthenticated."""
    cookies = live_site.new_user("two-tabs")
    chat = open_page(cookies=cookies)
    chat.wait_for_function("() => document.getElementById('banner').hidden")  # its socket is open
    other = open_page(cookies=cookies)
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url(re.compile(r".*/accounts/login/"))
    banner = chat.locator("#banner[data-kind='signed-out']")
    expect(banner).to_be_visible(timeout=5_000)
    expect(banner.locator("a")).to_have_attribute("href", re.compile(r"^/accounts/login/\?next="))
    chat.screenshot(path=artifact_path("signed-out-elsewhere.png"))
