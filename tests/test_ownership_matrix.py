"""Every page, admin view, export and share link that takes an id, tried by
another user, by an anonymous visitor and with a nonexistent id: all refused,
and the answer for someone else's id is the same as for an id that does not
exist (nothing reveals that it does). Websocket frames: tests/test_consumers.py
(test_another_user_cannot_touch_a_conversation) and tests/test_security_fuzz.py.
"""

import json

import pytest
from django.urls import reverse

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

MISSING = 987654

# (url name, method, body) for every chat URL that takes a conversation id.
BY_ID = [
    ("chat:conversation", "get", None),
    ("chat:detail", "get", None),
    ("chat:rename", "post", {"title": "mine now"}),
    ("chat:pin", "post", {"pinned": True}),
    ("chat:delete", "post", {}),
    ("chat:settings", "post", {"system_prompt": "obey me"}),
    ("chat:share-create", "post", {}),
    ("chat:share-revoke", "post", {}),
    ("chat:export-md", "get", None),
    ("chat:export-json", "get", None),
]


@pytest.fixture
def owned(make_user):
    alice = make_user("alice")
    conversation = Conversation.objects.create(owner=alice, title="Alice's secret plans")
    Message.objects.create(conversation=conversation, role="user", content="canary-7f3a9")
    return conversation


def call(client, name, method, body, conversation_id):
    url = reverse(name, args=[conversation_id])
    if method == "get":
        return client.get(url)
    return client.post(url, data=json.dumps(body), content_type="application/json")


def unchanged(conversation):
    fresh = Conversation.objects.get(pk=conversation.pk)
    assert fresh.title == "Alice's secret plans"
    assert fresh.system_prompt == "" and not fresh.pinned and fresh.share_token is None


@pytest.mark.parametrize(("name", "method", "body"), BY_ID)
def test_another_user_gets_exactly_what_a_missing_id_gets(client, make_user, owned, name, method, body):
    client.force_login(make_user("mallory"))
    theirs = call(client, name, method, body, owned.pk)
    missing = call(client, name, method, body, MISSING)
    assert theirs.status_code == 404
    assert (theirs.status_code, theirs.content) == (missing.status_code, missing.content)
    assert b"canary-7f3a9" not in theirs.content and b"secret plans" not in theirs.content
    unchanged(owned)


@pytest.mark.parametrize(("name", "method", "body"), BY_ID)
def test_anonymous_is_sent_to_login_whether_or_not_the_id_exists(client, owned, name, method, body):
    theirs = call(client, name, method, body, owned.pk)
    missing = call(client, name, method, body, MISSING)
    assert theirs.status_code in (302, 401, 403)
    if theirs.status_code == 302:
        assert reverse("login") in theirs["Location"]
    assert theirs.status_code == missing.status_code
    assert b"canary-7f3a9" not in theirs.content
    unchanged(owned)


@pytest.mark.parametrize(
    "name", ["admin:chat_conversation_change", "admin:chat_conversation_delete", "admin:chat_message_change"]
)
def test_admin_object_pages_refuse_non_staff_alike_for_existing_and_missing(client, make_user, owned, name):
    target = owned.pk if "conversation" in name else owned.messages.first().pk
    for who in (None, make_user("plain")):
        if who is not None:
            client.force_login(who)
        theirs = client.get(reverse(name, args=[target]))
        missing = client.get(reverse(name, args=[MISSING]))
        assert theirs.status_code == missing.status_code == 302
        assert "/admin/login/" in theirs["Location"]


def test_share_links_reveal_nothing_without_the_exact_live_token(client, make_user, owned):
    client.force_login(owned.owner)
    created = client.post(reverse("chat:share-create", args=[owned.pk]), content_type="application/json")
    assert created.status_code == 200
    owned.refresh_from_db()
    token = owned.share_token
    client.logout()
    assert b"canary-7f3a9" in client.get(reverse("chat:share", args=[token])).content
    never = client.get(reverse("chat:share", args=["x" * len(token)]))
    near = client.get(reverse("chat:share", args=[token[:-1] + ("A" if token[-1] != "A" else "B")]))
    assert never.status_code == near.status_code == 404
    assert never.content == near.content
    client.force_login(owned.owner)
    client.post(reverse("chat:share-revoke", args=[owned.pk]), content_type="application/json")
    client.logout()
    revoked = client.get(reverse("chat:share", args=[token]))
    assert revoked.status_code == 404 and revoked.content == never.content
    # Another user cannot share someone else's conversation to read it.
    client.force_login(make_user("mallory"))
    assert client.post(reverse("chat:share-create", args=[owned.pk])).status_code == 404
    owned.refresh_from_db()
    assert owned.share_token is None


def test_search_import_and_models_are_per_user(client, make_user, owned):
    client.force_login(make_user("mallory"))
    found = client.get(reverse("chat:search"), {"q": "canary-7f3a9"})
    assert found.status_code == 200 and b"secret plans" not in found.content
    assert b"canary-7f3a9" not in found.content
    client.logout()
    assert client.get(reverse("chat:search"), {"q": "canary"}).status_code in (302, 401, 403)
    assert client.get(reverse("api:models")).status_code in (302, 401, 403)
    assert client.post(reverse("chat:import")).status_code in (302, 401, 403)
