"""The conversation list in the admin: who gets in, finding chats (filters and
search that scale), read-only history, and query counts that do not grow."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from chat.models import Conversation, Message
from tests.admin_data import make_conversations, message

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:chat_conversation_changelist"


@pytest.fixture
def staff(make_user):
    return make_user("staff", is_staff=True, is_superuser=True)


@pytest.fixture
def plain_staff(make_user):
    """Staff with every permission on conversations, but not a superuser."""
    user = make_user("helpdesk", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="chat"))
    return user


def test_conversation_changelist_shows_columns_and_transcript_links(client, staff, make_user):
    owner = make_user("owner")
    first, second = make_conversations(owner, 2)
    Message.objects.filter(role="assistant").update(model="Emu/m", provider="Emu")
    client.force_login(staff)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Talk 0 about herons" in body and "Talk 1 about herons" in body
    for column in ("Title", "Owner", "Model", "Messages", "Updated at", "Transcript"):
        assert column in body
    for conversation in (first, second):
        assert reverse("admin:chat_conversation_transcript", args=[conversation.pk]) in body
    assert "By status" in body and "By provider" in body and "By model that answered" in body


def test_changelist_query_count_is_bounded(client, staff, make_user, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    owner = make_user("owner")
    make_conversations(owner, 3)
    client.force_login(staff)
    url = reverse(CHANGELIST)
    client.get(url)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    for n in range(10):
        make_conversations(make_user(f"other{n}"), 3)
    Message.objects.filter(role="assistant").update(model="Emu/m", provider="Emu")
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client.get(url).status_code == 200
    # Filtered and searched pages are bounded too.
    with django_assert_max_num_queries(len(small.captured_queries) + 1):
        assert client.get(url, {"owner__id__exact": owner.pk, "q": "herons", "provider": "Emu"}).status_code == 200


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


def test_search_finds_titles_message_text_system_prompts_and_owners(client, staff, make_user):
    owner = make_user("owner")
    make_conversations(owner, 1)
    Conversation.objects.create(owner=owner, title="Gardening")
    Conversation.objects.create(owner=make_user("zoe"), title="Poems", system_prompt="Answer like a pirate")
    client.force_login(staff)
    url = reverse(CHANGELIST)

    def titles(query: str) -> set[str]:
        body = client.get(url, {"q": query}).content.decode()
        return {t for t in ("Talk 0 about herons", "Gardening", "Poems") if t in body}

    assert titles("kingfisher") == {"Talk 0 about herons"}
    assert titles("Gardening") == {"Gardening"}
    assert titles("pirate") == {"Poems"}
    assert titles("zoe") == {"Poems"}


def test_owner_filter_does_not_list_every_user(client, staff, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    make_conversations(alice, 1)
    Conversation.objects.create(owner=bob, title="Bob's only talk")
    for n in range(5):
        make_user(f"bystander{n}")
    client.force_login(staff)
    url = reverse(CHANGELIST)
    unfiltered = client.get(url).content.decode()
    assert "By owner" not in unfiltered and "bystander" not in unfiltered
    body = client.get(url, {"owner__id__exact": bob.pk}).content.decode()
    assert "Bob&#x27;s only talk" in body and "Talk 0 about herons" not in body
    assert "By owner" in body and "bystander" not in body


def test_filters_by_status_model_provider_and_date(client, staff, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    talk = make_conversations(alice, 1)[0]
    bobs = Conversation.objects.create(owner=bob, title="Bob's only talk")
    message(bobs, "assistant", "hi", model="Ollama/llama3", provider="Ollama")
    client.force_login(staff)
    url = reverse(CHANGELIST)

    def shown(params) -> set[str]:
        body = client.get(url, params).content.decode()
        return {t for t in ("Talk 0 about herons", "Bob&#x27;s only talk") if t in body}

    assert shown({"messages__status__exact": "failed"}) == {"Talk 0 about herons"}
    assert shown({"model": "Ollama/llama3"}) == {"Bob&#x27;s only talk"}
    assert shown({"provider": "Ollama"}) == {"Bob&#x27;s only talk"}
    assert shown({"updated_at__year": talk.updated_at.year}) == {"Talk 0 about herons", "Bob&#x27;s only talk"}
    assert shown({"updated_at__year": 2001}) == set()
    messages = client.get(reverse("admin:chat_message_changelist"), {"status__exact": "failed"})
    assert messages.content.decode().count('field-short_content">message') == 1


def test_each_user_links_to_their_conversations(client, staff, make_user):
    alice = make_user("alice")
    client.force_login(staff)
    link = f"{reverse(CHANGELIST)}?owner__id__exact={alice.pk}"
    page = client.get(reverse("admin:auth_user_change", args=[alice.pk])).content.decode()
    assert f'href="{link}"' in page
    users = client.get(reverse("admin:auth_user_changelist")).content.decode()
    assert f'href="{link}"' in users


@pytest.mark.parametrize(
    "name,args",
    [
        (CHANGELIST, []),
        ("admin:chat_message_changelist", []),
        ("admin:chat_conversation_change", ["conversation"]),
        ("admin:chat_conversation_transcript", ["conversation"]),
        ("admin:chat_usagereport_changelist", []),
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


def test_conversations_cannot_be_added_or_edited(client, staff, make_user):
    conversation = Conversation.objects.create(owner=make_user("owner"), title="Mine", system_prompt="Be kind")
    client.force_login(staff)
    # "Add conversation" used to be a 500 (its owner could never be set).
    assert client.get(reverse("admin:chat_conversation_add")).status_code == 403
    assert client.post(reverse("admin:chat_conversation_add"), {"title": "x"}).status_code == 403
    assert Conversation.objects.count() == 1
    assert reverse("admin:chat_conversation_add") not in client.get(reverse(CHANGELIST)).content.decode()
    response = client.post(
        reverse("admin:chat_conversation_change", args=[conversation.pk]),
        {"title": "Renamed", "system_prompt": "Be rude", "model": "x"},
    )
    assert response.status_code == 302  # to the read-only transcript, nothing saved
    conversation.refresh_from_db()
    assert (conversation.title, conversation.system_prompt) == ("Mine", "Be kind")


def test_messages_cannot_be_added_or_edited_in_admin(client, staff, make_user):
    conversation = make_conversations(make_user("owner"), 1)[0]
    message_row = conversation.messages.first()
    client.force_login(staff)
    assert client.get(reverse("admin:chat_message_add")).status_code == 403
    response = client.post(reverse("admin:chat_message_change", args=[message_row.pk]), {"content": "rewritten"})
    assert response.status_code == 403
    message_row.refresh_from_db()
    assert message_row.content != "rewritten"


def test_only_superusers_delete_history(client, staff, plain_staff, make_user):
    first, second = make_conversations(make_user("owner"), 2)
    client.force_login(plain_staff)
    assert client.get(reverse(CHANGELIST)).status_code == 200
    assert client.get(reverse("admin:chat_conversation_delete", args=[first.pk])).status_code == 403
    action = {"action": "delete_selected", "_selected_action": [first.pk], "post": "yes"}
    client.post(reverse(CHANGELIST), action)
    msg = first.messages.first()
    assert client.post(reverse("admin:chat_message_delete", args=[msg.pk]), {"post": "yes"}).status_code == 403
    assert Conversation.objects.count() == 2
    client.force_login(staff)
    assert client.post(reverse("admin:chat_conversation_delete", args=[first.pk]), {"post": "yes"}).status_code == 302
    assert list(Conversation.objects.values_list("pk", flat=True)) == [second.pk]
