"""Conversation management views: owner-only, CSRF-protected, JSON, cheap."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

ACTIONS = [
    ("chat:rename", {"title": "Hijacked"}),
    ("chat:pin", {"pinned": True}),
    ("chat:delete", {}),
    ("chat:settings", {"system_prompt": "evil"}),
    ("chat:share-create", {}),
    ("chat:share-revoke", {}),
]


def post(client, name, conversation_id=None, data=None):
    args = [conversation_id] if conversation_id is not None else []
    return client.post(reverse(name, args=args), json.dumps(data or {}), content_type="application/json")


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def talk(owner):
    conversation = Conversation.objects.create(owner=owner, title="Herons", system_prompt="Be brief.")
    question = Message.objects.create(conversation=conversation, role="user", content="What is a heron?")
    Message.objects.create(conversation=conversation, role="assistant", content="A bird.", parent=question)
    return conversation


@pytest.mark.parametrize("name,data", ACTIONS)
def test_someone_else_gets_the_same_404_as_for_a_missing_id(client, make_user, talk, name, data):
    client.force_login(make_user("intruder"))
    theirs = post(client, name, talk.pk, data)
    missing = post(client, name, talk.pk + 999, data)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content
    talk.refresh_from_db()
    assert (talk.title, talk.pinned, talk.system_prompt, talk.share_token) == ("Herons", False, "Be brief.", None)


@pytest.mark.parametrize("name,data", ACTIONS)
def test_anonymous_is_sent_to_log_in_and_changes_nothing(client, talk, name, data):
    response = post(client, name, talk.pk, data)
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert Conversation.objects.filter(pk=talk.pk, title="Herons", pinned=False).exists()


def test_posts_need_the_csrf_token(owner, talk):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = post(client, "chat:rename", talk.pk, {"title": "No token"})
    assert response.status_code == 403
    client.get("/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("chat:rename", args=[talk.pk]),
        json.dumps({"title": "With token"}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200


def test_management_urls_refuse_get(client, owner, talk):
    client.force_login(owner)
    assert client.get(reverse("chat:rename", args=[talk.pk])).status_code == 405
    assert client.get(reverse("chat:delete", args=[talk.pk])).status_code == 405


def test_rename_trims_and_rejects_empty_or_long(client, owner, talk):
    client.force_login(owner)
    response = post(client, "chat:rename", talk.pk, {"title": "  Grey   herons \n"})
    assert response.status_code == 200 and response.json()["title"] == "Grey herons"
    assert post(client, "chat:rename", talk.pk, {"title": "   "}).status_code == 400
    assert post(client, "chat:rename", talk.pk, {"title": "x" * 201}).status_code == 400
    assert post(client, "chat:rename", talk.pk, {"title": 5}).status_code == 400
    bad = client.post(reverse("chat:rename", args=[talk.pk]), "{not json", content_type="application/json")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    talk.refresh_from_db()
    assert talk.title == "Grey herons"


def test_pin_and_unpin_keep_the_update_time(client, owner, talk):
    client.force_login(owner)
    before = Conversation.objects.get(pk=talk.pk).updated_at
    assert post(client, "chat:pin", talk.pk, {"pinned": True}).json()["pinned"] is True
    talk.refresh_from_db()
    assert talk.pinned and talk.updated_at == before
    assert post(client, "chat:pin", talk.pk, {"pinned": "yes"}).status_code == 400
    assert post(client, "chat:pin", talk.pk, {"pinned": False}).json()["pinned"] is False


def test_delete_removes_the_conversation_and_its_messages(client, owner, talk):
    client.force_login(owner)
    assert post(client, "chat:delete", talk.pk).json() == {"deleted": True}
    assert not Conversation.objects.filter(pk=talk.pk).exists()
    assert not Message.objects.filter(conversation_id=talk.pk).exists()
    assert post(client, "chat:delete", talk.pk).status_code == 404


def test_settings_set_system_prompt_and_model(client, owner, talk):
    client.force_login(owner)
    response = post(client, "chat:settings", talk.pk, {"system_prompt": "Answer in French.", "model": "gptalk/gpt-4"})
    assert response.status_code == 200
    assert response.json()["system_prompt"] == "Answer in French."
    talk.refresh_from_db()
    assert (talk.system_prompt, talk.model) == ("Answer in French.", "gptalk/gpt-4")
    assert post(client, "chat:settings", talk.pk, {"system_prompt": "x" * 20_001}).status_code == 400
    detail = client.get(reverse("chat:detail", args=[talk.pk])).json()
    assert detail["model"] == "gptalk/gpt-4" and detail["share_url"] is None


def test_create_an_empty_conversation_with_a_system_prompt(client, owner):
    client.force_login(owner)
    response = post(client, "chat:create", data={"system_prompt": "You are a pirate.", "model": ""})
    assert response.status_code == 201
    created = Conversation.objects.get(pk=response.json()["id"])
    assert created.owner == owner and created.system_prompt == "You are a pirate."


def test_share_link_is_random_read_only_and_revocable(client, owner, talk, make_user):
    client.force_login(owner)
    first = post(client, "chat:share-create", talk.pk).json()["share_url"]
    again = post(client, "chat:share-create", talk.pk).json()["share_url"]
    assert first == again and "/s/" in first
    token = first.rstrip("/").rsplit("/", 1)[-1]
    assert len(token) >= 40
    stranger = Client()
    page = stranger.get(f"/s/{token}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "What is a heron?" in body and "A bird." in body
    assert 'name="robots" content="noindex' in body
    assert page["X-Robots-Tag"].startswith("noindex")
    assert 'id="composer"' not in body  # read-only
    assert stranger.get(f"/s/{token[:-1]}/").status_code == 404
    # The share link gives no access to the conversation itself.
    stranger.force_login(make_user("stranger"))
    assert stranger.get(reverse("chat:conversation", args=[talk.pk])).status_code == 404
    assert post(client, "chat:share-revoke", talk.pk).json()["share_url"] is None
    assert Client().get(f"/s/{token}/").status_code == 404
    renewed = post(client, "chat:share-create", talk.pk).json()["share_url"]
    assert renewed != first


def test_share_page_query_count_is_constant(client, owner, talk, django_assert_num_queries):
    client.force_login(owner)
    token = post(client, "chat:share-create", talk.pk).json()["share_url"].rstrip("/").rsplit("/", 1)[-1]
    anonymous = Client()
    with django_assert_num_queries(2):  # the conversation, its messages
        assert anonymous.get(f"/s/{token}/").status_code == 200
    for i in range(20):
        Message.objects.create(conversation=talk, role="user", content=f"more {i}")
    with django_assert_num_queries(2):
        assert anonymous.get(f"/s/{token}/").status_code == 200


@pytest.mark.parametrize("name,data", ACTIONS[:2] + ACTIONS[3:])
def test_each_action_costs_a_fixed_number_of_queries(client, owner, talk, name, data, django_assert_max_num_queries):
    client.force_login(owner)
    # session, user, the conversation (owner-checked), the write(s)
    with django_assert_max_num_queries(5):
        assert post(client, name, talk.pk, data).status_code == 200
