"""The admin's usage page: per user, per day and per model, quotas, range, chart and CSV."""

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation, UsageLimit
from tests.admin_data import message

pytestmark = pytest.mark.django_db

URL = "admin:chat_usagereport_changelist"


@pytest.fixture
def staff(make_user):
    return make_user("staff", is_staff=True, is_superuser=True)


def answer(owner, *, day: dt.date, chars: int, model="Emu/gpt-4o-mini", provider="Emu", estimated=False, tokens=None):
    conversation = Conversation.objects.create(owner=owner, title="t")
    at = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    question = message(conversation, "user", "q" * 40, at=at)
    return message(
        conversation, "assistant", "a" * chars, parent=question, at=at, model=model, provider=provider,
        prompt_chars=40, answer_chars=chars, prompt_tokens=10, answer_tokens=tokens or chars // 4,
        tokens_estimated=estimated,
    )  # fmt: skip


def rows(body: str, table: str) -> str:
    start = body.index(f'id="{table}"')
    return body[start : body.index("</table>", start)]


def test_usage_per_user_day_and_model_with_quota(client, staff, make_user):
    today = timezone.now().date()
    alice, bob = make_user("alice"), make_user("bob")
    UsageLimit.objects.create(user=alice, daily_answer_chars=1000)
    answer(alice, day=today, chars=400)
    answer(alice, day=today - dt.timedelta(days=2), chars=100, model="Ollama/llama3", provider="Ollama", estimated=True)
    answer(bob, day=today - dt.timedelta(days=1), chars=80)
    answer(bob, day=today - dt.timedelta(days=60), chars=9999)  # outside the default 30 days
    client.force_login(staff)
    response = client.get(reverse(URL))
    assert response.status_code == 200
    body = response.content.decode()
    first_day = (today - dt.timedelta(days=29)).isoformat()
    assert f'name="start" value="{first_day}"' in body and f'name="end" value="{today.isoformat()}"' in body
    users = rows(body, "usage-users")
    assert users.index("alice") < users.index("bob")  # most used first
    assert "400 / 1000" in users  # alice's quota today: her own limit
    assert "<td class=\"num\">500</td>" in users and "9999" not in users
    assert 'style="width: 40%"' in users
    models = rows(body, "usage-models")
    assert "Ollama/llama3" in models and "Emu/gpt-4o-mini" in models
    days = rows(body, "usage-days")
    assert days.count("<tr>") == 4  # the header and three days with answers
    # The chart: one bar pair per day of the range, with its numbers as a tooltip.
    assert body.count('<rect class="answer"') == 30
    assert f"<title>{today:%Y-%m-%d}: 1 answers, 10 prompt + 100 answer tokens</title>" in body


def test_date_range_and_one_user(client, staff, make_user):
    today = timezone.now().date()
    alice, bob = make_user("alice"), make_user("bob")
    answer(alice, day=today - dt.timedelta(days=60), chars=123)
    answer(bob, day=today - dt.timedelta(days=60), chars=77)
    answer(bob, day=today, chars=5)
    client.force_login(staff)
    start, end = (today - dt.timedelta(days=61)).isoformat(), (today - dt.timedelta(days=59)).isoformat()
    body = client.get(reverse(URL), {"start": start, "end": end}).content.decode()
    assert f'name="start" value="{start}"' in body and f'name="end" value="{end}"' in body
    assert body.count('<rect class="answer"') == 3
    users = rows(body, "usage-users")
    assert "alice" in users and "bob" in users and "<td class=\"num\">5</td>" not in users
    only_bob = client.get(reverse(URL), {"start": start, "end": end, "user": bob.pk}).content.decode()
    assert "Usage of bob" in only_bob and "alice" not in rows(only_bob, "usage-users")


def test_csv_download(client, staff, make_user):
    today = timezone.now().date()
    answer(make_user("=cmd"), day=today, chars=40, model="=HYPERLINK(1)")
    answer(make_user("bob"), day=today, chars=8, estimated=True)
    client.force_login(staff)
    response = client.get(reverse(URL), {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    table = list(csv.reader(io.StringIO(response.content.decode())))
    assert table[0][:5] == ["day", "user", "provider", "model", "answers"]
    assert table[1:] == [
        [today.isoformat(), "'=cmd", "Emu", "'=HYPERLINK(1)", "1", "40", "40", "10", "10", "0"],
        [today.isoformat(), "bob", "Emu", "Emu/gpt-4o-mini", "1", "40", "8", "10", "2", "1"],
    ]


def test_usage_page_queries_do_not_grow_with_users(client, staff, make_user, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    today = timezone.now().date()
    answer(make_user("first"), day=today, chars=10)
    client.force_login(staff)
    client.get(reverse(URL))
    with CaptureQueriesContext(connection) as small:
        client.get(reverse(URL))
    for n in range(15):
        user = make_user(f"user{n}")
        UsageLimit.objects.create(user=user, daily_answer_chars=100 + n)
        answer(user, day=today - dt.timedelta(days=n % 5), chars=10 + n)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client.get(reverse(URL)).status_code == 200


def test_usage_is_linked_from_the_admin_index_and_each_user(client, staff, make_user):
    alice = make_user("alice")
    client.force_login(staff)
    assert reverse(URL) in client.get(reverse("admin:index")).content.decode()
    page = client.get(reverse("admin:auth_user_change", args=[alice.pk])).content.decode()
    assert f'{reverse(URL)}?user={alice.pk}' in page


def test_an_empty_range_and_a_bad_date_still_show_the_page(client, staff):
    client.force_login(staff)
    body = client.get(reverse(URL), {"start": "not a date", "end": "2001-02-30"}).content.decode()
    assert "No answers in this range." in body and "no answers in this range" in body
    assert body.count('<rect class="answer"') == 30  # the default range, every bar flat
    assert 'height="0.0"' in body
