"""The admin's transcript page: every message in order with its facts, branches
marked, pages, model output passed as JSON only, and each reading recorded."""

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.templatetags.static import static
from django.urls import reverse

from chat.models import Conversation, TranscriptView
from chat.selectors.transcript import TRANSCRIPT_PAGE_SIZE, transcript_entries
from tests.admin_data import branched_conversation, make_conversations, message

pytestmark = pytest.mark.django_db

XSS = '<img src=x onerror="document.title=\'pwned\'"><script>alert(1)</script>'


@pytest.fixture
def staff(make_user):
    return make_user("staff", is_staff=True, is_superuser=True)


def transcript_url(conversation) -> str:
    return reverse("admin:chat_conversation_transcript", args=[conversation.pk])


def texts(body: str) -> list[dict]:
    found = re.search(r'<script id="transcript-texts" type="application/json">(.*?)</script>', body, re.S)
    return json.loads(found.group(1))


def test_branches_are_ordered_and_the_seen_path_marked(make_user):
    conversation, m = branched_conversation(make_user("owner"))
    entries = transcript_entries(messages=list(conversation.messages.all()))
    order = [entry.message.pk for entry in entries]
    assert order == [m[k].pk for k in ("q1", "a1", "a2", "q2", "a3", "q1b", "a4")]
    by_pk = {entry.message.pk: entry for entry in entries}
    seen = {k for k, row in m.items() if by_pk[row.pk].on_path}
    assert seen == {"q1b", "a4"}
    assert by_pk[m["q1"].pk].alternative == (1, 2) and by_pk[m["q1b"].pk].alternative == (2, 2)
    assert by_pk[m["a1"].pk].alternative == (1, 2) and by_pk[m["a2"].pk].alternative == (2, 2)
    assert by_pk[m["q2"].pk].alternative is None
    # Depth: how many alternatives away from what the user sees; what follows a
    # version (q2 after a2) stays at its depth.
    assert [by_pk[m[k].pk].depth for k in ("q1", "a1", "a2", "q2", "q1b", "a4")] == [1, 2, 2, 2, 0, 0]


def test_transcript_shows_every_message_with_its_facts(client, staff, make_user):
    conversation, m = branched_conversation(make_user("owner"))
    conversation.system_prompt = "Answer in haiku."
    conversation.save()
    failure = "The provider failed (HTTP 500)."
    message(conversation, "assistant", "Half an ans", parent=m["a4"], status="failed", error=failure)
    client.force_login(staff)
    response = client.get(transcript_url(conversation))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Answer in haiku." in body
    assert "Emu/gpt-4o-mini" in body and "via Emu" in body
    assert "1234 ms (first text 56 ms)" in body and "7 → 5 tokens" in body
    assert "2026-11-01 09:06:00" in body  # the time of a4
    assert "Stopped" in body and "Failed:</strong> The provider failed (HTTP 500)." in body
    assert "version 2 of 2 · seen" in body and "version 1 of 2" in body
    assert body.count("tx-off-path") == 5 and body.count("tx-on-path") == 3
    assert [t["content"] for t in texts(body)][:3] == ["First question", "Stopped answ", "Second answer"]
    # The content-hashed name that {% static %} gives with the manifest storage.
    assert f'type="module" src="{static("chat/js/admin-transcript.js")}"' in body


def test_model_output_reaches_the_page_only_as_json(client, staff, make_user):
    conversation = Conversation.objects.create(owner=make_user("owner"), title="XSS")
    question = message(conversation, "user", XSS)
    message(conversation, "assistant", XSS, parent=question, status="failed", error=XSS)
    client.force_login(staff)
    body = client.get(transcript_url(conversation)).content.decode()
    assert "<img src=x" not in body and "<script>alert" not in body
    assert [t["content"] for t in texts(body)] == [XSS, XSS]
    assert "&lt;img src=x onerror=" in body  # the error text, escaped by the template


def test_long_conversations_are_paged_with_bounded_queries(client, staff, make_user, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    short = make_conversations(make_user("owner"), 1, messages_each=4)[0]
    long = make_conversations(make_user("other"), 1, messages_each=TRANSCRIPT_PAGE_SIZE * 2 + 10)[0]
    client.force_login(staff)
    client.get(transcript_url(short))
    with CaptureQueriesContext(connection) as small:
        client.get(transcript_url(short))
    with django_assert_max_num_queries(len(small.captured_queries)):
        first = client.get(transcript_url(long)).content.decode()
    assert len(texts(first)) == TRANSCRIPT_PAGE_SIZE
    assert "messages 1–40 of 90" in first and 'href="?page=3"' in first
    last = client.get(transcript_url(long), {"page": 3}).content.decode()
    assert [t["content"] for t in texts(last)][-1] == f"message {TRANSCRIPT_PAGE_SIZE * 2 + 9} of talk 0: kingfisher"
    assert len(texts(last)) == 10
    # A page past the end shows the last one rather than failing.
    assert client.get(transcript_url(long), {"page": 99}).status_code == 200


def test_linked_from_the_conversation_page_which_has_nothing_to_edit(client, staff, make_user):
    conversation = make_conversations(make_user("owner"), 1)[0]
    client.force_login(staff)
    response = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    assert response.status_code == 302 and response["Location"] == transcript_url(conversation)
    assert client.get(reverse("admin:chat_conversation_transcript", args=[999999])).status_code == 404


def test_each_staff_reading_of_another_users_transcript_is_recorded(client, staff, make_user):
    owner = make_user("owner")
    theirs = make_conversations(owner, 1)[0]
    mine = Conversation.objects.create(owner=staff, title="My own")
    client.force_login(staff)
    client.get(transcript_url(theirs))
    client.get(transcript_url(theirs), {"page": 1})
    client.get(transcript_url(mine))
    client.get(reverse("admin:chat_message_change", args=[theirs.messages.first().pk]))
    rows = list(TranscriptView.objects.order_by("id").values_list("viewer_id", "owner_id", "conversation_id", "action"))
    assert rows == [(staff.pk, owner.pk, theirs.pk, "transcript")] * 2 + [(staff.pk, owner.pk, theirs.pk, "message")]
    assert all(row.viewed_at is not None and row.viewer_name == "staff" for row in TranscriptView.objects.all())


def test_the_audit_is_shown_to_superusers_only_and_never_edited(client, staff, make_user):
    owner = make_user("owner")
    conversation = make_conversations(owner, 1)[0]
    helpdesk = make_user("helpdesk", is_staff=True)
    helpdesk.user_permissions.set(Permission.objects.filter(content_type__app_label="chat"))
    client.force_login(helpdesk)
    assert client.get(transcript_url(conversation)).status_code == 200
    audit = reverse("admin:chat_transcriptview_changelist")
    assert client.get(audit).status_code == 403
    assert "Transcript views" not in client.get(reverse("admin:index")).content.decode()
    row = TranscriptView.objects.get()
    assert (row.viewer_name, row.owner_name, row.conversation_title) == ("helpdesk", "owner", "Talk 0 about herons")
    client.force_login(staff)
    listing = client.get(audit).content.decode()
    assert "helpdesk" in listing and "Talk 0 about herons" in listing
    assert client.get(reverse("admin:chat_transcriptview_add")).status_code == 403
    response = client.post(reverse("admin:chat_transcriptview_change", args=[row.pk]), {"viewer_name": "nobody"})
    assert response.status_code == 403
    assert client.post(reverse("admin:chat_transcriptview_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    row.refresh_from_db()
    assert row.viewer_name == "helpdesk"
