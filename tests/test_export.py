"""Export a conversation as Markdown and JSON, and import a JSON export back."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chat.models import Conversation, Message
from chat.services import conversation_edits

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def branched(owner):
    """A question with two answers (a regeneration), then a follow-up on the second."""
    conversation = Conversation.objects.create(owner=owner, title="Herons & egrets", system_prompt="Be brief.")
    q = Message.objects.create(conversation=conversation, role="user", content="What is a heron?")
    Message.objects.create(conversation=conversation, role="assistant", content="First answer.", parent=q)
    a2 = Message.objects.create(conversation=conversation, role="assistant", content="**A wading bird.**", parent=q)
    q2 = Message.objects.create(conversation=conversation, role="user", content="And an egret?", parent=a2)
    Message.objects.create(
        conversation=conversation, role="assistant", content="Also a heron", parent=q2,
        status="stopped",
    )
    return conversation


def upload(client, data, name="export.json"):
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return client.post(reverse("chat:import"), {"file": SimpleUploadedFile(name, raw, "application/json")})


def test_markdown_export_is_the_newest_branch(client, owner, branched):
    client.force_login(owner)
    response = client.get(reverse("chat:export-md", args=[branched.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"] == 'attachment; filename="Herons-egrets.md"'
    text = response.content.decode()
    assert text.startswith("# Herons & egrets\n")
    assert "> **System prompt:** Be brief." in text
    assert "**A wading bird.**" in text and "First answer." not in text
    assert text.index("What is a heron?") < text.index("And an egret?") < text.index("Also a heron")
    assert "*(Stopped)*" in text


def test_json_export_keeps_every_branch_and_imports_back(client, owner, branched):
    client.force_login(owner)
    response = client.get(reverse("chat:export-json", args=[branched.pk]))
    assert response["Content-Type"].startswith("application/json")
    data = json.loads(response.content)
    assert data["format"] == "gptalk-chat" and data["version"] == 1
    assert len(data["messages"]) == 5
    imported = upload(client, data)
    assert imported.status_code == 201, imported.content
    copy = Conversation.objects.get(pk=imported.json()["id"])
    assert copy.pk != branched.pk and copy.owner == owner
    assert (copy.title, copy.system_prompt) == (branched.title, branched.system_prompt)
    old = list(branched.messages.order_by("id"))
    new = list(copy.messages.order_by("id"))
    assert [(m.role, m.content, m.status) for m in new] == [(m.role, m.content, m.status) for m in old]
    assert not {m.pk for m in new} & {m.pk for m in old}  # never the file's ids
    # Same tree shape: each parent maps to the copy of the same parent.
    mapping = {o.pk: n.pk for o, n in zip(old, new, strict=True)}
    assert [mapping.get(o.parent_id) for o in old] == [n.parent_id for n in new]
    assert imported.json()["url"] == reverse("chat:conversation", args=[copy.pk])


def test_exports_are_owner_only(client, make_user, branched):
    client.force_login(make_user("intruder"))
    for name in ("chat:export-md", "chat:export-json"):
        assert client.get(reverse(name, args=[branched.pk])).status_code == 404
    client.logout()
    assert client.get(reverse("chat:export-json", args=[branched.pk])).status_code == 302


def test_import_needs_login_and_a_file(client, owner):
    assert upload(client, {}).status_code == 302
    client.force_login(owner)
    response = client.post(reverse("chat:import"))
    assert response.status_code == 400 and "file" in response.json()["error"]


GOOD = {
    "format": "gptalk-chat",
    "version": 1,
    "title": "Imported",
    "messages": [
        {"id": "a", "parent": None, "role": "user", "content": "Hi"},
        {"id": "b", "parent": "a", "role": "assistant", "content": "Hello", "status": "complete"},
    ],
}


def variant(**changes):
    data = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if key.startswith("m1_"):
            data["messages"][1][key[3:]] = value
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    "data,needle",
    [
        (b"\xff\xfe not utf8", "not valid JSON"),
        (b"[1, 2]", "not a GPTalk Chat export"),
        (variant(format="other"), "not a GPTalk Chat export"),
        (variant(version=2), "version"),
        (variant(extra=1), "Unknown field"),
        (variant(messages=[]), "no messages"),
        (variant(title="x" * 201), "too long"),
        (variant(m1_role="system"), "role"),
        (variant(m1_role="<script>"), "role"),
        (variant(m1_status="streaming"), "status"),
        (variant(m1_parent="zzz"), "parent"),
        (variant(m1_parent="b"), "parent"),
        (variant(m1_id="a"), "same id"),
        (variant(m1_content=7), "must be text"),
        (variant(m1_content="x" * 200_001), "too long"),
        (variant(m1_sneaky=True), "Unknown field"),
        (variant(m1_id={"x": 1}), "short id"),
    ],
)
def test_bad_files_are_refused_with_a_clear_error_and_create_nothing(client, owner, data, needle):
    client.force_login(owner)
    before = Conversation.objects.count(), Message.objects.count()
    response = upload(client, data)
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert (Conversation.objects.count(), Message.objects.count()) == before


def test_import_too_large_is_refused(client, owner, monkeypatch):
    monkeypatch.setattr(conversation_edits, "IMPORT_MAX_BYTES", 100)
    client.force_login(owner)
    response = upload(client, variant(title="x" * 150))
    assert response.status_code == 400 and "too large" in response.json()["error"]


def test_user_message_longer_than_the_chat_limit_is_refused(client, owner, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    client.force_login(owner)
    data = variant()
    data["messages"][0]["content"] = "x" * 11
    assert upload(client, data).status_code == 400


def test_import_never_touches_ids_or_other_users(client, owner, make_user, branched):
    other = make_user("other")
    client.force_login(other)
    data = variant()
    taken = branched.messages.first().pk  # an id that exists, someone else's
    data["messages"][0]["id"] = taken
    data["messages"][1]["parent"] = taken
    response = upload(client, data)
    assert response.status_code == 201
    copy = Conversation.objects.get(pk=response.json()["id"])
    assert copy.owner == other
    assert branched.messages.count() == 5  # the owner's conversation is untouched
    assert copy.messages.filter(parent__conversation=branched).count() == 0


def test_import_query_count_is_linear_in_messages_only(client, owner, django_assert_max_num_queries):
    client.force_login(owner)
    with django_assert_max_num_queries(2 + 4 + len(GOOD["messages"])):
        assert upload(client, GOOD).status_code == 201
