"""The admin's export action: one JSON and one Markdown file per conversation, in a zip."""

import io
import json
import zipfile

import pytest
from django.urls import reverse

from chat.models import Conversation, TranscriptView
from tests.admin_data import branched_conversation, make_conversations

pytestmark = pytest.mark.django_db


def test_selected_conversations_export_as_a_zip(client, make_user, django_assert_max_num_queries):
    staff = make_user("staff", is_staff=True, is_superuser=True)
    owner = make_user("owner")
    branched, _ = branched_conversation(owner)
    same_title = make_conversations(owner, 2)
    Conversation.objects.filter(pk=same_title[1].pk).update(title=same_title[0].title)
    left_out = Conversation.objects.create(owner=owner, title="Not selected")
    selected = [branched.pk, same_title[0].pk, same_title[1].pk]
    client.force_login(staff)
    action = {"action": "export_conversations", "_selected_action": selected}
    with django_assert_max_num_queries(12):
        response = client.post(reverse("admin:chat_conversation_changelist"), action)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = sorted(archive.namelist())
    assert names == sorted(
        f"owner/{pk}-{title}.{ext}"
        for pk, title in ((branched.pk, "Branches"), (same_title[0].pk, "Talk-0-about-herons"),
                          (same_title[1].pk, "Talk-0-about-herons"))
        for ext in ("json", "md")
    )  # fmt: skip
    data = json.loads(archive.read(f"owner/{branched.pk}-Branches.json"))
    assert data["title"] == "Branches" and len(data["messages"]) == 7  # every branch
    markdown = archive.read(f"owner/{branched.pk}-Branches.md").decode()
    assert "First question, edited" in markdown and "Answer to the edit" in markdown
    assert "Follow-up answer" not in markdown  # only the branch the user sees
    assert not any(str(left_out.pk) + "-" in name for name in names)
    recorded = set(TranscriptView.objects.values_list("conversation_id", "action"))
    assert recorded == {(pk, "export") for pk in selected}
