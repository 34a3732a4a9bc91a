"""The chat pages: who may see them, what they list, and that they stay cheap and script-safe."""

import json
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def make_conversation(owner, title: str, *, age_minutes: int = 0) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title)
    # updated_at is auto_now: set it with update() to control the order.
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(minutes=age_minutes)
    )
    return conversation


class ScriptCollector(HTMLParser):
    """Every <script> start tag's attributes and the text inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self._current: dict | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._current = {"attrs": dict(attrs), "text": ""}
            self.scripts.append(self._current)

    def handle_data(self, data):
        if self._current is not None:
            self._current["text"] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._current = None


def scripts_of(html: str) -> list[dict]:
    parser = ScriptCollector()
    parser.feed(html)
    return parser.scripts


def json_block(html: str, element_id: str):
    for script in scripts_of(html):
        if script["attrs"].get("id") == element_id:
            return json.loads(script["text"])
    raise AssertionError(f"no json_script block #{element_id}")


# ---- access ---------------------------------------------------------------


def test_anonymous_index_redirects_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/"


def test_anonymous_conversation_redirects_to_login(client, make_user):
    conversation = make_conversation(make_user(), "Secret")
    url = reverse("chat:conversation", args=[conversation.pk])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_other_users_conversation_is_404_like_a_missing_one(client, make_user):
    owner, intruder = make_user("owner"), make_user("intruder")
    theirs = make_conversation(owner, "Owner's private plans")
    client.force_login(intruder)
    other = client.get(reverse("chat:conversation", args=[theirs.pk]))
    missing = client.get(reverse("chat:conversation", args=[theirs.pk + 1000]))
    assert other.status_code == missing.status_code == 404
    assert other.content == missing.content
    assert b"private plans" not in other.content


def test_chat_pages_only_answer_get(client, make_user):
    client.force_login(make_user())
    assert client.post("/").status_code == 405


# ---- content ----------------------------------------------------------------


def test_index_lists_only_own_conversations_newest_first(client, make_user):
    me, other = make_user("me"), make_user("other")
    make_conversation(me, "Oldest heron", age_minutes=30)
    make_conversation(me, "Newest heron", age_minutes=1)
    make_conversation(me, "Middle heron", age_minutes=10)
    make_conversation(other, "Not mine at all")
    client.force_login(me)
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Not mine at all" not in body
    positions = [
        body.index(t) for t in ("Newest heron", "Middle heron", "Oldest heron")
    ]
    assert positions == sorted(positions)
    assert "me" in body  # the user's name in the sidebar
    assert reverse("logout") in body


def test_index_has_chat_shell_and_config(client, make_user):
    client.force_login(make_user())
    body = client.get("/").content.decode()
    for marker in (
        'id="composer"',
        'id="prompt"',
        'id="thread"',
        'aria-live="polite"',
        'id="new-chat"',
    ):
        assert marker in body
    config = json_block(body, "chat-config")
    assert config["conversation"] is None
    assert config["socketPath"] == "/ws/chat/?v=2"  # the compact protocol
    assert config["conversationUrl"] == "/c/{id}/"
    assert json_block(body, "chat-messages") == []


def test_conversation_page_embeds_history_as_json_not_html(client, make_user):
    me = make_user()
    conversation = make_conversation(me, "Markup test")
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    Message.objects.create(conversation=conversation, role="user", content="hi")
    Message.objects.create(conversation=conversation, role="assistant", content=hostile)
    client.force_login(me)
    response = client.get(reverse("chat:conversation", args=[conversation.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<script>alert(1)" not in body
    assert "<img src=x" not in body
    messages = json_block(body, "chat-messages")
    assert [m["content"] for m in messages] == ["hi", hostile]
    assert json_block(body, "chat-config")["conversation"] == conversation.pk
    assert 'aria-current="page"' in body


def test_pages_have_no_inline_script_code(client, make_user):
    me = make_user()
    conversation = make_conversation(me, "Scripts")
    Message.objects.create(
        conversation=conversation, role="user", content="</script><script>x()"
    )
    client.force_login(me)
    pages = [
        "/",
        reverse("chat:conversation", args=[conversation.pk]),
        reverse("password_change"),
    ]
    client2 = type(client)()
    anonymous_pages = [reverse("login"), reverse("signup"), reverse("password_reset")]
    checked = 0
    for c, urls in ((client, pages), (client2, anonymous_pages)):
        for url in urls:
            response = c.get(url)
            assert response.status_code == 200, url
            for script in scripts_of(response.content.decode()):
                attrs = script["attrs"]
                if "src" in attrs:
                    assert attrs.get("type") == "module", url
                    assert not script["text"].strip(), url
                else:
                    assert attrs.get("type") == "application/json", (url, script)
                checked += 1
    assert checked >= 4  # the chat pages do carry scripts


def test_chat_page_query_count_is_constant(
    client, make_user, django_assert_num_queries
):
    me = make_user()
    client.force_login(me)
    make_conversation(me, "One")
    # session, user, conversation list, account defaults
    with django_assert_num_queries(4):
        assert client.get("/").status_code == 200
    for i in range(25):
        make_conversation(me, f"Talk {i}")
    with django_assert_num_queries(4):
        assert client.get("/").status_code == 200


def test_conversation_page_query_count_is_constant(
    client, make_user, django_assert_num_queries
):
    me = make_user()
    client.force_login(me)
    opened = make_conversation(me, "Opened")
    for i in range(3):
        Message.objects.create(conversation=opened, role="user", content=f"q{i}")
        Message.objects.create(conversation=opened, role="assistant", content=f"a{i}")
    url = reverse("chat:conversation", args=[opened.pk])
    # session, user, conversation list, the conversation, its messages, account defaults
    with django_assert_num_queries(6):
        assert client.get(url).status_code == 200
    for i in range(25):
        make_conversation(me, f"Talk {i}")
        Message.objects.create(conversation=opened, role="user", content=f"more {i}")
    with django_assert_num_queries(6):
        assert client.get(url).status_code == 200


def test_static_assets_referenced_by_the_chat_page_exist(client, make_user):
    """The page names the content-hashed copies, and collectstatic wrote them."""
    from pathlib import Path

    from django.conf import settings
    from django.templatetags.static import static

    client.force_login(make_user())
    body = client.get("/").content.decode()
    for path in (
        "chat/app.css",
        "chat/chat.css",
        "chat/controls.css",
        "chat/js/main.js",
        "vendor/marked/marked.esm.js",
        "vendor/dompurify/purify.es.mjs",
    ):
        url = static(path)
        stem, _, suffix = path.rpartition(".")
        assert re.fullmatch(rf"/static/{re.escape(stem)}\.[0-9a-f]{{12}}\.{suffix}", url), url
        assert url in body, path
        hashed = Path(settings.STATIC_ROOT, url.removeprefix("/static/"))
        assert hashed.is_file() and hashed.with_name(hashed.name + ".gz").is_file(), url


def test_our_code_has_no_html_injection_sinks():
    """Model output must never become live HTML; vendored libraries are excluded."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sinks = re.compile(
        r"innerHTML\s*=|outerHTML\s*=|insertAdjacentHTML|document\.write|\|\s*safe\b|mark_safe"
    )
    files = [
        *root.joinpath("static", "chat").rglob("*.js"),
        *root.joinpath("templates").rglob("*.html"),
        root / "chat" / "views.py",
        root / "chat" / "forms.py",
    ]
    assert len(files) > 10
    offenders = [str(f) for f in files if sinks.search(f.read_text())]
    assert offenders == []
