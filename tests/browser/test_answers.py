"""An answer is never lost, in Chromium against real daphne + emulator
processes: it streams visibly, survives a reload, closed tabs, a dropped socket
and a lost delta, ends readably on every upstream fault, is marked interrupted
when its process is killed, and can be stopped by the button or by Esc.
"""

from __future__ import annotations

import re
import sqlite3
import time
from itertools import pairwise

import pytest
from playwright.sync_api import expect

from chat.emulator.stream import rewritten
from tests.browser.conftest import wait_until
from tests.browser.helpers import (
    CONVERSATION_URL,
    LONG_REPLY,
    PARAGRAPHS,
    NetworkCut,
    SocketProxy,
    answer,
    expect_long_reply,
    paragraphs,
    send,
    start_answer,
    wait_chars,
    wait_done,
)

pytestmark = pytest.mark.browser

SAMPLE_LENGTHS = """
(() => {
  window.__lengths = [];
  const tick = () => {
    const all = document.querySelectorAll('.msg-assistant .markdown');
    const el = all[all.length - 1];
    if (el) window.__lengths.push([performance.now(), el.textContent.length]);
    requestAnimationFrame(tick);
  };
  tick();
})()
"""


def saved_message(live_site, message_id: int) -> tuple[str, str]:
    """(status, content) of a message as the site saved it."""
    path = live_site.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=10) as db:
        row = db.execute(
            "SELECT status, content FROM chat_message WHERE id = ?", (message_id,)
        ).fetchone()
    return row


def answer_id(page) -> int:
    return int(answer(page).get_attribute("data-id"))


def test_answer_streams_in_visibly_and_ends_complete(open_page, emulator):
    page = open_page()
    page.evaluate(SAMPLE_LENGTHS)
    start_answer(page, emulator, "Tell me about herons")
    expect_long_reply(page)
    lengths = page.evaluate("window.__lengths")
    growing = [(t, n) for t, n in lengths if n > 0]
    distinct = sorted({n for _, n in growing})
    # Many visible steps, spread over time, never shrinking.
    assert len(distinct) >= 20, distinct
    assert growing[-1][0] - growing[0][0] > 1000
    assert all(b[1] >= a[1] for a, b in pairwise(growing))
    expect(page.locator("#send")).to_have_attribute("aria-label", "Send")


def test_reload_mid_answer_continues_live_and_ends_exact(open_page, emulator):
    page = open_page()
    start_answer(page, emulator, "Reload me")
    wait_chars(page, 400)
    page.reload()
    expect(answer(page)).to_have_attribute("aria-busy", "true")
    wait_chars(page, 100)
    seen = page.evaluate("document.querySelector('.msg-assistant:last-of-type .markdown').textContent.length")
    wait_chars(page, seen + 200)  # still growing after the reload: live, not a saved copy
    expect_long_reply(page)


def test_closing_every_tab_does_not_stop_the_answer(open_page, emulator, live_site):
    page = open_page()
    start_answer(page, emulator, "Keep writing when I leave")
    wait_chars(page, 300)
    url, message_id = page.url, answer_id(page)
    page.context.close()
    wait_until(
        lambda: saved_message(live_site, message_id)[0] == "complete",
        what="the answer to finish with nobody watching",
    )
    again = open_page(url.removeprefix(live_site.url))
    expect(answer(again)).to_have_attribute("aria-busy", "false", timeout=1_000)
    expect_long_reply(again)
    assert saved_message(live_site, message_id) == ("complete", LONG_REPLY)


def test_dropped_connection_shows_offline_reconnects_with_backoff_and_ends_exact(
    open_page, emulator, live_site
):
    network = NetworkCut(live_site.port)
    try:
        page = open_page(None)
        page.goto(network.url + "/")
        start_answer(page, emulator, "Survive a dropped connection", interval_ms=25, chunk_chars=8)
        wait_chars(page, 200)
        cut_at = time.monotonic()
        network.cut(refuse_next=2)
        expect(page.locator("#banner")).to_contain_text("Offline", timeout=5_000)
        wait_until(lambda: network.refused == 2 and len(network.handshakes) >= 4, what="3 reconnects")
        expect(page.locator("#banner")).to_be_hidden(timeout=10_000)
        times = [cut_at, *network.handshakes[1:]]
        gaps = [b - a for a, b in pairwise(times)]
        assert all(g >= 0.2 for g in gaps), gaps  # no hot loop
        assert gaps[2] >= gaps[0] and gaps[2] >= 0.45, gaps  # the delay grows
        expect(answer(page)).to_have_attribute("aria-busy", "true")  # resumed live
        expect_long_reply(page)
    finally:
        network.close()


def test_message_sent_while_connecting_waits_and_goes_out_once(open_page, emulator, live_site):
    network = NetworkCut(live_site.port)
    network.hold()  # the websocket handshake hangs: the page is still connecting
    try:
        page = open_page(None)
        page.goto(network.url + "/")
        emulator.next(reply="Queued, then delivered.", interval_ms=10, chunk_chars=6)
        send(page, "Typed before the connection was up")
        expect(page.locator("#alert")).to_contain_text("will be sent", timeout=5_000)
        expect(page.locator("#prompt")).to_have_value("Typed before the connection was up")
        expect(page.locator("#send")).to_have_class(re.compile(r"\bis-queued\b"))
        assert emulator.stats()["texts"] == 0

        network.release()
        page.wait_for_url(CONVERSATION_URL)
        wait_done(page)
        expect(answer(page).locator(".markdown")).to_have_text("Queued, then delivered.")
        expect(page.locator(".msg-user")).to_have_count(1)
        expect(page.locator(".msg-user").last).to_contain_text("Typed before the connection was up")
        expect(page.locator("#prompt")).to_have_value("")
        expect(page.locator("#alert")).to_be_hidden()
        expect(page.locator("#send")).not_to_have_class(re.compile(r"\bis-queued\b"))
        assert emulator.stats()["texts"] == 1
    finally:
        network.close()


def test_emptying_the_box_cancels_a_queued_message(open_page, emulator, live_site):
    network = NetworkCut(live_site.port)
    network.hold()
    try:
        page = open_page(None)
        page.goto(network.url + "/")
        send(page, "Never mind")
        expect(page.locator("#alert")).to_contain_text("will be sent", timeout=5_000)
        page.fill("#prompt", "")
        network.release()
        expect(page.locator("#banner")).to_be_hidden(timeout=10_000)
        page.fill("#prompt", "Now a fresh thought")  # the box works and nothing went out
        expect(page.locator("#send")).to_be_enabled()
        assert page.url == network.url + "/"
        expect(page.locator(".msg-user")).to_have_count(0)
        assert emulator.stats()["texts"] == 0
    finally:
        network.close()


def test_lost_delta_heals_with_a_fresh_snapshot(open_page, emulator):
    proxies = []
    page = open_page(setup=lambda p: proxies.append(SocketProxy(p)))
    proxies[0].drop_seq = 30
    start_answer(page, emulator, "Lose a piece on the way")
    wait_done(page)
    assert proxies[0].opens() >= 1
    expect_long_reply(page)


FAULT_REPLY = "This reply starts well but the upstream breaks it somewhere along the way."


@pytest.mark.parametrize(
    "faults",
    [
        ["login_500"],
        ["login_no_data"],
        ["text_500"],
        ["text_429"],
        ["text_no_data", "text_no_data"],
        ["stream_cut"],
        ["stream_malformed"],
        ["stream_stall"],
    ],
    ids=lambda f: f[0],
)
def test_upstream_fault_fails_readably_and_retry_works(open_page, emulator, faults):
    page = open_page()
    for fault in faults:
        if fault.startswith("login"):
            emulator.next(fault=fault)
        else:
            emulator.next(fault=fault, reply=FAULT_REPLY, chunk_chars=5, interval_ms=10)
    send(page, f"Trigger {faults[0]}")
    status = answer(page).locator(".msg-status[data-status='failed']")
    expect(status).to_be_visible(timeout=20_000)
    expect(status.locator(".badge")).to_have_text("Failed")
    error = status.locator(".msg-error").inner_text()
    assert 15 < len(error) < 300 and error.endswith("."), error
    assert "Traceback" not in error and "Error:" not in error
    text = answer(page).locator(".markdown").inner_text()
    assert FAULT_REPLY.startswith(text.strip()), text  # partial text kept, never garbage
    emulator.next(reply="Recovered after the fault.")
    status.locator("[data-action='retry']").click()
    expect(answer(page).locator(".markdown")).to_have_text("Recovered after the fault.")
    wait_done(page)
    expect(answer(page).locator(".msg-status")).to_be_hidden()
    expect(page.locator(".pager-label").last).to_have_text("2 / 2")


def test_stream_rewrite_completes_with_the_rewritten_text(open_page, emulator):
    page = open_page()
    emulator.next(fault="stream_rewrite", reply=FAULT_REPLY, chunk_chars=5, interval_ms=10)
    send(page, "Rewrite yourself")
    wait_done(page)
    expect(answer(page).locator(".msg-status")).to_be_hidden()
    assert paragraphs(page) == [rewritten(FAULT_REPLY)]


@pytest.mark.parametrize("how", ["button", "escape"])
def test_stop_saves_a_stopped_answer_with_its_partial_text(open_page, emulator, live_site, how):
    page = open_page()
    start_answer(page, emulator, f"Stop this by {how}")
    wait_chars(page, 200)
    if how == "button":
        expect(page.locator("#send")).to_have_attribute("aria-label", "Stop")
        page.click("#send")
    else:
        page.keyboard.press("Escape")
    status = answer(page).locator(".msg-status[data-status='stopped']")
    expect(status).to_be_visible(timeout=10_000)
    expect(status.locator(".badge")).to_have_text("Stopped")
    shown = paragraphs(page)
    assert 0 < len(shown) < len(PARAGRAPHS)
    assert shown[:-1] == PARAGRAPHS[: len(shown) - 1]
    assert PARAGRAPHS[len(shown) - 1].startswith(shown[-1])
    state, saved = saved_message(live_site, answer_id(page))
    assert state == "stopped" and saved and LONG_REPLY.startswith(saved)
    page.reload()
    expect(answer(page).locator(".msg-status[data-status='stopped']")).to_be_visible()
    expect(page.locator("#send")).to_have_attribute("aria-label", "Send")


def test_killed_process_leaves_an_interrupted_answer_that_regenerates(open_page, emulator, live_site):
    page = open_page()
    start_answer(page, emulator, "This answer dies with its process", interval_ms=30, chunk_chars=6)
    message_id = answer_id(page)
    wait_until(lambda: len(saved_message(live_site, message_id)[1]) > 0, what="a first save")
    live_site.restart(kill=True, CHAT_GENERATION_LEASE="2")
    expect(page.locator("#banner")).to_contain_text("Offline", timeout=5_000)
    status = answer(page).locator(".msg-status[data-status='interrupted']")
    expect(status).to_be_visible(timeout=20_000)
    expect(page.locator("#banner")).to_be_hidden()
    state, saved = saved_message(live_site, message_id)
    assert state == "interrupted" and saved and LONG_REPLY.startswith(saved)
    shown = answer(page).locator(".markdown p").all_inner_texts()
    assert "\n\n".join(shown) == saved.strip()
    emulator.next(reply="Regenerated after the crash.")
    status.locator("[data-action='regenerate']").click()
    expect(answer(page).locator(".markdown")).to_have_text("Regenerated after the crash.")
    wait_done(page)
    expect(page.locator(".pager-label").last).to_have_text("2 / 2")


def test_session_ended_elsewhere_shows_signed_out_with_a_login_link(open_page, emulator):
    proxies = []
    page = open_page(setup=lambda p: proxies.append(SocketProxy(p)))
    proxy = proxies[0]
    page.wait_for_function("() => document.getElementById('banner').hidden")
    page.context.clear_cookies()
    proxy.cut()
    banner = page.locator("#banner[data-kind='signed-out']")
    expect(banner).to_be_visible(timeout=20_000)
    assert banner.locator("a").get_attribute("href").startswith("/accounts/login/?next=")


def test_scrolling_up_while_streaming_is_not_undone_and_jump_returns(open_page, emulator):
    page = open_page(viewport={"width": 1280, "height": 600})
    start_answer(page, emulator, "A long answer to scroll through")
    wait_chars(page, 1200)
    page.mouse.move(700, 300)
    page.mouse.wheel(0, -300)
    expect(page.locator("#jump")).to_be_visible()
    top = page.evaluate("document.getElementById('scroller').scrollTop")
    wait_chars(page, 1600)  # more text arrived meanwhile
    assert page.evaluate("document.getElementById('scroller').scrollTop") == top
    page.click("#jump")
    page.wait_for_function(
        "() => (s => s.scrollHeight - s.scrollTop - s.clientHeight < 100)(document.getElementById('scroller'))"
    )
    expect(page.locator("#jump")).to_be_hidden()
    expect_long_reply(page)
