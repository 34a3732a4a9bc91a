"""Staff browse every conversation in the admin; nobody else gets in; no N+1."""

import pytest
from django.urls import reverse

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(make_user):
    return make_user("staff", is_staff=True, is_superuser=True)


def make_conversations(owner, count: int, messages_each: int = 3) -> list[Conversation]:
    conversations = []
    for i in range(count):
        conversation = Conversation.objects.create(owner=owner, title=f"Talk {i} about herons")
        for j in range(messages_each):
            Message.objects.create(
                conversation=conversation,
                role="user" if j % 2 == 0 else "assistant",
                content=f"message {j} of talk {i}: kingfisher",
                status="complete" if j < messages_each - 1 else "failed",
            )
        conversations.append(conversation)
    return conversations


def test_conversation_changelist_shows_columns_for_staff(client, staff, make_user):
    owner = make_user("owner")
    make_conversations(owner, 2)
    client.force_login(staff)
    response = client.get(reverse("admin:chat_conversation_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Talk 0 about herons" in body and "Talk 1 about herons" in body
    for column in ("Title", "Owner", "Messages", "Updated at"):
        assert column in body
    assert "By owner" in body and "By status" in body


def test_changelist_query_count_does_not_grow_with_rows(client, staff, make_user):
    owner = make_user("owner")
    make_conversations(owner, 3)
    client.force_login(staff)
    url = reverse("admin:chat_conversation_changelist")
    client.get(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    make_conversations(owner, 30)
    with CaptureQueriesContext(connection) as large:
        assert client.get(url).status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)


def test_message_changelist_query_count_does_not_grow_with_rows(client, staff, make_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    owner = make_user("owner")
    make_conversations(owner, 2)
    client.force_login(staff)
    url = reverse("admin:chat_message_changelist")
    client.get(url)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    make_conversations(make_user("other"), 20)
    with CaptureQueriesContext(connection) as large:
        assert client.get(url).status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)


def test_conversation_page_shows_messages_inline_read_only(client, staff, make_user):
    conversation = make_conversations(make_user("owner"), 1)[0]
    client.force_login(staff)
    response = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "message 0 of talk 0: kingfisher" in body
    # The inline is read-only: no form fields for message content.
    assert 'name="messages-0-content"' not in body


def test_search_finds_titles_and_message_text(client, staff, make_user):
    owner = make_user("owner")
    make_conversations(owner, 1)
    Conversation.objects.create(owner=owner, title="Gardening")
    client.force_login(staff)
    url = reverse("admin:chat_conversation_changelist")
    by_text = client.get(url, {"q": "kingfisher"}).content.decode()
    assert "Talk 0 about herons" in by_text and "Gardening" not in by_text
    by_title = client.get(url, {"q": "Gardening"}).content.decode()
    assert "Gardening" in by_title and "Talk 0 about herons" not in by_title


def test_filters_by_owner_and_status(client, staff, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    make_conversations(alice, 1)
    Conversation.objects.create(owner=bob, title="Bob's only talk")
    client.force_login(staff)
    url = reverse("admin:chat_conversation_changelist")
    body = client.get(url, {"owner__id__exact": bob.pk}).content.decode()
    assert "Bob&#x27;s only talk" in body and "Talk 0 about herons" not in body
    body = client.get(url, {"messages__status__exact": "failed"}).content.decode()
    assert "Talk 0 about herons" in body and "Bob&#x27;s only talk" not in body
    messages = client.get(reverse("admin:chat_message_changelist"), {"status__exact": "failed"})
    assert messages.status_code == 200
    assert messages.content.decode().count('field-short_content">message') == 1


def test_date_hierarchy_renders(client, staff, make_user):
    conversation = make_conversations(make_user("owner"), 1)[0]
    client.force_login(staff)
    url = reverse("admin:chat_conversation_changelist")
    response = client.get(url, {"updated_at__year": conversation.updated_at.year})
    assert response.status_code == 200
    assert "Talk 0 about herons" in response.content.decode()


@pytest.mark.parametrize(
    "name,args",
    [
        ("admin:chat_conversation_changelist", []),
        ("admin:chat_message_changelist", []),
        ("admin:chat_conversation_change", ["conversation"]),
    ],
)
def test_admin_refused_to_non_staff_and_anonymous(client, make_user, name, args):
    conversation = make_conversations(make_user("owner"), 1)[0]
    url = reverse(name, args=[conversation.pk] if args else [])
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.force_login(make_user("plain"))
    refused = client.get(url)
    assert refused.status_code == 302 and "/admin/login/" in refused["Location"]


def test_messages_cannot_be_added_or_edited_in_admin(client, staff, make_user):
    conversation = make_conversations(make_user("owner"), 1)[0]
    message = conversation.messages.first()
    client.force_login(staff)
    assert client.get(reverse("admin:chat_message_add")).status_code == 403
    response = client.post(
        reverse("admin:chat_message_change", args=[message.pk]), {"content": "rewritten"}
    )
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.content != "rewritten"
