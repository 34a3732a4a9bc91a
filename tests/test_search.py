"""Search over titles and message text: contains on SQLite, full-text on PostgreSQL."""


import pytest
from django.urls import reverse

from chat.models import Conversation, Message
from chat.selectors.search import conversation_search, search_snippet
from tests.fixtures.services import postgres_url  # noqa: F401 - fixture


def make(owner, title, *texts):
    conversation = Conversation.objects.create(owner=owner, title=title)
    parent = None
    for i, text in enumerate(texts):
        parent = Message.objects.create(
            conversation=conversation, role="user" if i % 2 == 0 else "assistant", content=text, parent=parent
        )
    return conversation


@pytest.fixture
def library(make_user):
    me, other = make_user("me"), make_user("other")
    found = {
        "title": make(me, "Heron migration", "When do they fly south?", "In autumn."),
        "text": make(me, "Birds", "Tell me about the grey heron", "It waits by the water."),
        "russian": make(me, "Птицы", "Расскажи про цаплю", "Серая цапля ждёт у воды."),
    }
    make(me, "Cooking", "How long to boil an egg?", "About nine minutes.")
    make(other, "Heron secrets", "heron heron heron")
    return me, found


def ids(hits):
    return {hit.conversation.pk for hit in hits}


def check_search(me, found):
    assert ids(conversation_search(user=me, query="heron")) == {found["title"].pk, found["text"].pk}
    assert ids(conversation_search(user=me, query="цаплю")) == {found["russian"].pk}
    assert ids(conversation_search(user=me, query="Migration")) == {found["title"].pk}
    assert conversation_search(user=me, query="   ") == []
    assert conversation_search(user=me, query="platypus") == []
    hit = next(h for h in conversation_search(user=me, query="grey") if h.conversation.pk == found["text"].pk)
    assert "grey heron" in hit.snippet


@pytest.mark.django_db
def test_sqlite_contains_search_finds_titles_and_text_of_own_conversations_only(library):
    me, found = library
    check_search(me, found)


@pytest.mark.django_db
def test_search_view_returns_json_for_the_caller_only(client, library, make_user):
    me, found = library
    client.force_login(me)
    results = client.get(reverse("chat:search"), {"q": "heron"}).json()["results"]
    assert {r["id"] for r in results} == {found["title"].pk, found["text"].pk}
    assert all(set(r) >= {"id", "title", "snippet", "pinned"} for r in results)
    client.force_login(make_user("nobody"))
    assert client.get(reverse("chat:search"), {"q": "heron"}).json()["results"] == []
    client.logout()
    assert client.get(reverse("chat:search"), {"q": "heron"}).status_code == 302


@pytest.mark.django_db
def test_search_is_one_query_whatever_the_number_of_hits(client, make_user, django_assert_num_queries):
    me = make_user("me")
    client.force_login(me)
    for i in range(15):
        make(me, f"Heron {i}", "heron text", "answer")
    with django_assert_num_queries(3):  # session, user, the search
        assert len(client.get(reverse("chat:search"), {"q": "heron"}).json()["results"]) == 15


def test_snippet_is_around_the_match():
    text = "word " * 100 + "the heron waits" + " more" * 100
    piece = search_snippet(text, "heron")
    assert "heron" in piece and piece.startswith("…") and piece.endswith("…")
    assert len(piece) < 160


PG_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
from chat.selectors.search import conversation_search

User = get_user_model()
me = User.objects.create_user("me", password="x" * 12)
other = User.objects.create_user("other", password="x" * 12)

def make(owner, title, *texts):
    c = Conversation.objects.create(owner=owner, title=title)
    for i, text in enumerate(texts):
        Message.objects.create(conversation=c, role="user" if i % 2 == 0 else "assistant", content=text)
    return c.pk

found = {
    "title": make(me, "Heron migration", "When do they fly south?", "In autumn."),
    "text": make(me, "Birds", "Tell me about the grey heron", "It waits by the water."),
    "russian": make(me, "Птицы", "Расскажи про цаплю", "Серая цапля ждёт у воды."),
}
make(me, "Cooking", "How long to boil an egg?", "About nine minutes.")
make(other, "Heron secrets", "heron heron heron")
queries = ["heron", "цаплю", "Migration", "platypus", "her", '"grey heron"', "heron -migration", "grey"]
hits = {q: sorted(h.conversation.pk for h in conversation_search(user=me, query=q)) for q in queries}
snippets = [h.snippet for h in conversation_search(user=me, query="grey")]
from django.db import connection
print(json.dumps({"vendor": connection.vendor, "found": found, "hits": hits, "snippets": snippets}))
"""


@pytest.mark.multiprocess
def test_postgres_full_text_search(postgres_url):
    """The PostgreSQL path, in a process of its own on a fresh database of the real local server."""
    from tests.fixtures.site import shell_json_on

    result = shell_json_on(postgres_url, PG_SCRIPT)
    assert result["vendor"] == "postgresql"
    found, hits = result["found"], result["hits"]
    assert hits["heron"] == sorted([found["title"], found["text"]])
    assert hits["цаплю"] == [found["russian"]]
    assert hits["Migration"] == [found["title"]]
    assert hits["platypus"] == []
    assert hits["her"] == []  # full-text words, not substrings
    assert hits['"grey heron"'] == [found["text"]]  # websearch syntax: a phrase
    assert hits["heron -migration"] == [found["text"]]  # and a negation
    assert any("grey heron" in s for s in result["snippets"])
