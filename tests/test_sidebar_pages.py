"""The sidebar in pages: the chat page lists the first page only, and
GET /api/conversations/?before=<cursor> the next ones (keyset, owner-checked)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation
from chat.selectors import SIDEBAR_PAGE_SIZE, InvalidCursor, conversation_page

pytestmark = pytest.mark.django_db


def make_history(owner, count: int, *, pinned: set[int] = frozenset(), same_time: bool = False):
    """`count` conversations, the first the newest; `same_time`: all with one updated_at."""
    now = timezone.now()
    rows = Conversation.objects.bulk_create(
        Conversation(owner=owner, title=f"Chat number {i} about the grey heron", pinned=i in pinned)
        for i in range(count)
    )
    for i, row in enumerate(rows):
        row.updated_at = now if same_time else now - timedelta(minutes=i)
    Conversation.objects.bulk_update(rows, ["updated_at"])
    return rows


def all_pages(client) -> list[dict]:
    url, seen, pages = reverse("api:conversations"), [], 0
    params: dict = {}
    while True:
        body = client.get(url, params).json()
        seen += body["results"]
        pages += 1
        if body["next"] is None:
            return seen
        assert pages < 100
        params = {"before": body["next"]}


def test_chat_page_html_stays_under_100_kb_with_500_chats(client, make_user):
    me = make_user()
    make_history(me, 500)
    client.force_login(me)
    response = client.get("/")
    assert response.status_code == 200
    assert len(response.content) <= 100 * 1024, len(response.content)
    html = response.content.decode()
    assert html.count('data-updated="') == SIDEBAR_PAGE_SIZE
    assert 'id="conv-more"' in html and 'data-next="' in html


def test_an_open_chat_beyond_the_first_page_is_listed(client, make_user):
    me = make_user()
    rows = make_history(me, 120)
    client.force_login(me)
    html = client.get(reverse("chat:conversation", args=[rows[-1].pk])).content.decode()
    assert f'data-id="{rows[-1].pk}"' in html
    assert html.count('data-updated="') == SIDEBAR_PAGE_SIZE + 1


@pytest.mark.parametrize("same_time", [False, True])
def test_pages_list_every_chat_once_pinned_first_then_newest(client, make_user, same_time):
    me, other = make_user(), make_user()
    rows = make_history(me, 137, pinned={5, 60, 99}, same_time=same_time)
    make_history(other, 30)
    client.force_login(me)
    listed = all_pages(client)
    ids = [c["id"] for c in listed]
    assert len(ids) == len(set(ids)) == 137  # every one of mine, none of theirs, none twice
    assert [c["pinned"] for c in listed[:3]] == [True, True, True]
    expected = sorted(rows, key=lambda c: (not c.pinned, -c.updated_at.timestamp(), -c.pk))
    assert ids == [c.pk for c in expected]


def test_a_page_is_three_queries_wherever_it_starts(client, make_user, django_assert_num_queries):
    me = make_user()
    make_history(me, 160)
    client.force_login(me)
    url = reverse("api:conversations")
    with django_assert_num_queries(3):  # session, user, the page
        first = client.get(url).json()
    with django_assert_num_queries(3):
        second = client.get(url, {"before": first["next"]}).json()
    assert len(first["results"]) == len(second["results"]) == SIDEBAR_PAGE_SIZE
    assert set(first["results"][0]) >= {"id", "title", "pinned", "updated_at"}


@pytest.mark.parametrize("cursor", ["x", "1-2", "2-0-1", "0-abc-3", "0-99999999999999999999999-1"])
def test_a_cursor_it_did_not_hand_out_is_a_400(client, make_user, cursor):
    client.force_login(make_user())
    assert client.get(reverse("api:conversations"), {"before": cursor}).status_code == 400
    with pytest.raises(InvalidCursor):
        conversation_page(user=make_user(), before=cursor)


def test_pages_need_a_login(client):
    assert client.get(reverse("api:conversations")).status_code == 302
