"""/accounts/: the account page — defaults of new chats, export of all data,
deleting the account — and the small HTTP promises (HEAD /, /favicon.ico)."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.urls import reverse

from chat.models import AccountSettings, Conversation, Message
from chat.serializers import message_data
from chat.services.conversation_edits import conversation_share
from chat.services.conversations import exchange_create

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def chat_with_branches(owner, title: str) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title, system_prompt="Be brief.")
    question = Message.objects.create(conversation=conversation, role="user", content="What is a heron?")
    Message.objects.create(
        conversation=conversation, role="assistant", parent=question, content="A bird.", model="GPTalk/gpt-4o"
    )
    Message.objects.create(conversation=conversation, role="assistant", parent=question, content="A wading bird.")
    return conversation


def test_account_page_needs_login(client):
    response = client.get(reverse("account"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_account_page_shows_every_section(client, make_user):
    client.force_login(make_user("heron"))
    body = client.get(reverse("account")).content.decode()
    for marker in ('name="default_model"', 'name="custom_instructions"', 'name="old_password"',
                   reverse("account-export"), 'name="delete-password"', 'name="email-email"'):
        assert marker in body, marker


def test_saved_defaults_apply_to_new_chats_only(client, make_user):
    me = make_user("heron")
    client.force_login(me)
    before = Conversation.objects.create(owner=me, title="Before")
    response = client.post(reverse("account"), {"default_model": "", "custom_instructions": "Answer in French."})
    assert response.status_code == 302
    conversation, _, _ = exchange_create(user=me, conversation=None, content="Hello")
    assert conversation.system_prompt == "Answer in French."
    before.refresh_from_db()
    assert before.system_prompt == ""
    # A model that is not offered is refused, and nothing changes.
    refused = client.post(reverse("account"), {"default_model": "nope/none", "custom_instructions": "x"})
    assert refused.status_code == 400
    assert AccountSettings.objects.get(user=me).custom_instructions == "Answer in French."


def test_default_model_is_applied_and_offered_to_the_page(client, make_user):
    me = make_user("heron")
    AccountSettings.objects.create(user=me, default_model="GPTalk/gpt-4o", custom_instructions="Be kind.")
    client.force_login(me)
    conversation, _, assistant = exchange_create(user=me, conversation=None, content="Hi")
    assert (conversation.model, assistant.model) == ("GPTalk/gpt-4o", "GPTalk/gpt-4o")
    config = client.get("/").context["chat_config"]
    assert (config["defaultModel"], config["defaultInstructions"]) == ("GPTalk/gpt-4o", "Be kind.")


def test_export_is_one_zip_with_every_chat_in_markdown_and_json(client, make_user):
    me = make_user("heron")
    other = make_user("stork")
    chat_with_branches(me, "Herons")
    chat_with_branches(me, "Herons")  # the same title twice: two files each
    chat_with_branches(other, "Not mine")
    AccountSettings.objects.create(user=me, custom_instructions="Be brief.")
    client.force_login(me)
    response = client.get(reverse("account-export"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = sorted(archive.namelist())
    assert len([n for n in names if n.startswith("markdown/")]) == 2
    assert len([n for n in names if n.startswith("json/")]) == 2
    account = json.loads(archive.read("account.json"))
    assert account["username"] == "heron" and account["custom_instructions"] == "Be brief."
    exported = json.loads(archive.read(next(n for n in names if n.startswith("json/"))))
    assert len(exported["messages"]) == 3  # every branch
    markdown = archive.read(next(n for n in names if n.startswith("markdown/"))).decode()
    assert markdown.startswith("# Herons") and "Not mine" not in markdown


def test_the_reset_address_changes_only_with_the_password(client, make_user):
    me = make_user("heron", email="old@example.test")
    client.force_login(me)
    page = client.get(reverse("account")).content.decode()
    assert 'value="old@example.test"' in page
    refused = client.post(reverse("account-email"), {"email-email": "thief@example.test", "email-password": "wrong"})
    assert refused.status_code == 400 and "not your password" in refused.content.decode()
    bad = client.post(reverse("account-email"), {"email-email": "not an address", "email-password": PASSWORD})
    assert bad.status_code == 400 and 'name="email-email"' in bad.content.decode()
    me.refresh_from_db()
    assert me.email == "old@example.test"

    saved = client.post(reverse("account-email"), {"email-email": "new@example.test", "email-password": PASSWORD},
                        follow=True)  # fmt: skip
    me.refresh_from_db()
    assert me.email == "new@example.test" and "Password reset links go to this address" in saved.content.decode()
    cleared = client.post(reverse("account-email"), {"email-email": "", "email-password": PASSWORD}, follow=True)
    me.refresh_from_db()
    assert me.email == "" and "ask an administrator" in cleared.content.decode()
    assert client.get(reverse("account-email")).status_code == 405


def test_the_account_page_in_russian_names_the_reset_address(client, make_user):
    client.force_login(make_user("heron"))
    body = client.get(reverse("account"), HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Куда отправить ссылку для сброса пароля" in body and "Сохранить адрес" in body


def test_delete_account_needs_the_password(client, make_user):
    me = make_user("heron")
    chat_with_branches(me, "Herons")
    client.force_login(me)
    response = client.post(reverse("account-delete"), {"delete-password": "wrong"})
    assert response.status_code == 400 and "not your password" in response.content.decode()
    assert get_user_model().objects.filter(pk=me.pk).exists()


def test_delete_account_leaves_nothing(client, make_user):
    me = make_user("heron")
    keep = make_user("stork")
    kept_chat = chat_with_branches(keep, "Stork's")
    shared = chat_with_branches(me, "Herons")
    conversation_share(conversation=shared)
    token = Conversation.objects.get(pk=shared.pk).share_token
    AccountSettings.objects.create(user=me, custom_instructions="x")
    AccessAttempt.objects.create(username="heron", ip_address="127.0.0.1", failures_since_start=1)
    client.force_login(me)
    other_device = type(client)()
    other_device.force_login(me)
    assert Session.objects.count() == 2

    response = client.post(reverse("account-delete"), {"delete-password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert "were deleted" in client.get(response["Location"]).content.decode()
    assert not get_user_model().objects.filter(username="heron").exists()
    assert not Conversation.objects.filter(owner_id=me.pk).exists()
    assert not Message.objects.filter(conversation_id=shared.pk).exists()
    assert not AccountSettings.objects.filter(user_id=me.pk).exists()
    assert not AccessAttempt.objects.filter(username="heron").exists()
    assert Session.objects.count() == 0  # signed out on every device
    assert client.get(reverse("chat:share", args=[token])).status_code == 404
    assert other_device.get("/").status_code == 302
    # Someone else's data is untouched.
    assert Message.objects.filter(conversation=kept_chat).count() == 3


def test_head_of_the_chat_answers_like_get(client, make_user):
    assert client.head("/").status_code == client.get("/").status_code == 302
    client.force_login(make_user())
    assert client.head("/").status_code == 200
    assert client.head(reverse("login")).status_code == 200


def test_favicon_ico_leads_to_the_icon(client):
    response = client.get("/favicon.ico")
    # The hashed name of static/chat/favicon.svg (static files are content-addressed).
    assert response.status_code == 302
    assert re.fullmatch(r"/static/chat/favicon\.[0-9a-f]{12}\.svg", response["Location"]), response["Location"]


def test_message_frames_say_which_model_wrote_an_answer(make_user):
    conversation = chat_with_branches(make_user(), "Herons")
    answers = conversation.messages.filter(role="assistant").order_by("id")
    assert [message_data(m)["model"] for m in answers] == ["GPTalk/gpt-4o", None]
