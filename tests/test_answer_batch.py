"""New chats started together are written together (chat.services.answer_batch)."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.models import AccountSettings, Conversation, Message
from chat.services.answer_batch import NewChat, answers_begin_new, new_chat_queue
from chat.services.limits import LimitExceeded
from tests.ws import connect, is_done, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_state")]
# postgres_url, for the one test of the PostgreSQL path
pytest_plugins = ["tests.fixtures.services"]


def test_a_batch_writes_each_chat_as_answer_begin_would(make_user, settings, django_assert_max_num_queries):
    settings.CHAT_CONCURRENT_ANSWERS = 2
    ann, bob = make_user("ann"), make_user("bob")
    AccountSettings.objects.create(user=bob, default_model="GPTalk/gpt-4", custom_instructions="Be brief.")
    chats = [
        NewChat(user=ann, content="Hello **there**, first"),
        NewChat(user=bob, content="bob asks", model=""),
        NewChat(user=ann, content="ann again"),
        NewChat(user=ann, content="one too many"),  # a third answer at once: refused
        NewChat(user=bob, content="x" * (settings.CHAT_MAX_MESSAGE_CHARS + 1)),
    ]
    # Limits, usage, defaults, then the three inserts (plus the transaction):
    # the same for five chats as for one.
    with django_assert_max_num_queries(9):
        results = answers_begin_new.func(chats=chats)
    first, bobs, second, refused, too_long = results
    assert isinstance(refused, LimitExceeded) and refused.code == "too_many_answers"
    assert isinstance(too_long, LimitExceeded) and too_long.code == "too_long"
    assert first.created and first.conversation.owner_id == ann.pk
    assert first.user_message.content == "Hello **there**, first" and first.user_message.parent_id is None
    assert first.assistant.parent_id == first.user_message.pk and first.assistant.status == "pending"
    assert first.history == [{"role": "user", "content": "Hello **there**, first"}]
    assert first.allowance.starts == 1 and second.allowance.starts == 0
    assert bobs.conversation.system_prompt == "Be brief." and bobs.assistant.model == "GPTalk/gpt-4"
    assert bobs.history[0] == {"role": "system", "content": "Be brief."}
    assert Conversation.objects.count() == 3 and Message.objects.count() == 6
    saved = Conversation.objects.get(pk=first.conversation.pk)
    assert saved.title == first.conversation.title and saved.created_at is not None


async def test_starts_that_arrive_together_share_trips_to_the_database(make_user, emulator):
    users = [await sync_to_async(make_user)(f"crowd{i}") for i in range(12)]
    queue = new_chat_queue()
    before = queue.batches
    begun = await asyncio.gather(*(queue.submit(NewChat(user=u, content=f"q{i}")) for i, u in enumerate(users)))
    assert len({b.conversation.pk for b in begun}) == 12
    assert 1 <= queue.batches - before < 12


async def test_new_chats_through_the_socket_use_the_batch(make_user, emulator):
    user = await sync_to_async(make_user)("dora")
    ws = await connect(user)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "chat.send", "conversation": None, "content": "hi", "ref": "r"})
        frames = await receive_until(ws, is_done)
    finally:
        await ws.disconnect()
    assert [f["type"] for f in frames[:3]] == ["conversation", "message", "message"]
    assert frames[1]["ref"] == "r" and frames[-1]["status"] == "complete"


def test_rows_insert_writes_what_bulk_create_would(make_user, monkeypatch):
    from django.forms.models import model_to_dict

    from chat.services import db

    monkeypatch.setattr(db, "ROWS_MAX", 2)  # 5 rows: three statements
    ann = make_user("ann")
    ours = [Conversation(owner=ann, title=f"t{i}", model="m", pinned=i % 2 == 0) for i in range(5)]
    theirs = [Conversation(owner=ann, title=f"t{i}", model="m", pinned=i % 2 == 0) for i in range(5)]
    db.rows_insert(ours)
    Conversation.objects.bulk_create(theirs)
    assert [c.pk for c in ours] == sorted(c.pk for c in ours)
    assert all(not c._state.adding and c._state.db == "default" for c in ours)
    for mine, other in zip(ours, theirs, strict=True):
        saved = Conversation.objects.get(pk=mine.pk)
        assert model_to_dict(saved, exclude=["id"]) == model_to_dict(
            Conversation.objects.get(pk=other.pk), exclude=["id"]
        )
        assert saved.created_at == mine.created_at and saved.updated_at == mine.updated_at
    questions = [Message(conversation=c, role=Message.Role.USER, content="q\x01é") for c in ours]
    db.rows_insert(questions)
    answers = [
        Message(conversation=q.conversation, parent=q, role=Message.Role.ASSISTANT, status=Message.Status.PENDING)
        for q in questions
    ]
    db.rows_insert(answers)
    for answer in answers:
        saved = Message.objects.get(pk=answer.pk)
        assert (saved.role, saved.status, saved.parent.content) == ("assistant", "pending", "q\x01é")
        assert saved.created_at == answer.created_at


ROWS_INSERT_PG = """
import json
from django.contrib.auth.models import User
from django.db import DataError, connection
from django.forms.models import model_to_dict
from chat.models import Conversation, Message
from chat.services import db

db.ROWS_MAX = 2  # 5 rows: three statements
ann = User.objects.create_user("ann")
ours = [Conversation(owner=ann, title=f"t{i} %s $1", model="m", pinned=i % 2 == 0) for i in range(5)]
theirs = [Conversation(owner=ann, title=f"t{i} %s $1", model="m", pinned=i % 2 == 0) for i in range(5)]
db.rows_insert(ours)
Conversation.objects.bulk_create(theirs)
same = all(
    model_to_dict(Conversation.objects.get(pk=a.pk), exclude=["id"])
    == model_to_dict(Conversation.objects.get(pk=b.pk), exclude=["id"])
    for a, b in zip(ours, theirs)
)
questions = [Message(conversation=c, role="user", content="q\\x01é'); --") for c in ours]
db.rows_insert(questions)
answers = [Message(conversation=q.conversation, parent=q, role="assistant", status="pending") for q in questions]
db.rows_insert(answers)
saved = [(m.role, m.status, m.parent.content) for m in Message.objects.filter(pk__in=[a.pk for a in answers])]
try:
    db.rows_insert([Message(conversation=ours[0], role="user", content="a\\x00b")])
    refused = None
except DataError as exc:
    refused = type(exc).__module__
print(json.dumps({
    "vendor": connection.vendor,
    "pks_ordered": [c.pk for c in ours] == sorted(c.pk for c in ours),
    "stamps": [Conversation.objects.get(pk=c.pk).created_at == c.created_at for c in ours],
    "same": same, "saved": saved, "refused": refused,
}))
"""


@pytest.mark.multiprocess
def test_rows_insert_on_postgresql(postgres_url):
    """The PostgreSQL path of rows_insert (numbered placeholders through a raw
    cursor): the rows bulk_create would write, their keys in order, text with
    quotes and placeholders kept as text, and a refused value raising Django's
    DataError like any query."""
    from tests.fixtures.site import shell_json_on

    result = shell_json_on(postgres_url, ROWS_INSERT_PG)
    assert result["vendor"] == "postgresql"
    assert result["pks_ordered"] and all(result["stamps"]) and result["same"]
    assert result["saved"] == [["assistant", "pending", "q\x01é'); --"]] * 5
    assert result["refused"] == "django.db.utils"


ROWS_UPDATE = """
import datetime, json
from django.contrib.auth.models import User
from django.db import DataError, connection, transaction
from chat.models import Conversation, Message
from chat.services import db

db.ROWS_MAX = 2  # 5 rows: three statements
ann = User.objects.create_user("ann")
conversation = Conversation.objects.create(owner=ann, title="t")
messages = [
    Message.objects.create(conversation=conversation, role="assistant", status=status, content="")
    for status in ("streaming", "pending", "complete", "streaming", "streaming")
]
when = datetime.datetime(2026, 12, 7, 12, 30, 15, 123456, tzinfo=datetime.timezone.utc)
fields = ["content", "status", "delta_count", "first_delta_ms", "updated_at", "tokens_estimated"]
rows = [
    (f"text {i} %s $1 '); --", "stopped", 10 + i, None if i % 2 else 100 + i, when, i % 2 == 0, m.pk)
    for i, m in enumerate(messages)
]
with transaction.atomic():
    # Only answers still being written; the complete one keeps its row.
    db.rows_update(model=Message, fields=fields, rows=rows, where="status IN (%s, %s)",
                   where_params=("pending", "streaming"))
saved = [
    [m.content, m.status, m.delta_count, m.first_delta_ms, m.updated_at == when, m.tokens_estimated]
    for m in Message.objects.filter(pk__in=[m.pk for m in messages]).order_by("pk")
]
refused = []
for field, value in (("status", "x" * 17), ("content", "a\\x00b")):
    try:
        with transaction.atomic():
            db.rows_update(model=Message, fields=[field], rows=[(value, messages[0].pk)])
        refused.append(None)
    except DataError as exc:
        refused.append(type(exc).__module__)
print(json.dumps({"vendor": connection.vendor, "saved": saved, "refused": refused}))
"""


@pytest.mark.multiprocess
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rows_update_writes_each_row_where_it_may(backend, request, tmp_path):
    """rows_update on both backends (PostgreSQL: one statement joining the
    values in, through a raw cursor): every column's value and type kept,
    text with quotes and placeholders kept as text, NULLs, the extra
    condition, and values the column refuses raising Django's DataError
    (a too long status is refused, not cut)."""
    from tests.fixtures.site import shell_json_on, sqlite_url

    sqlite = sqlite_url(tmp_path / "db.sqlite3")
    result = shell_json_on(request.getfixturevalue("postgres_url") if backend == "postgresql" else sqlite, ROWS_UPDATE)
    assert result["vendor"] == backend
    expected = [
        [f"text {i} %s $1 '); --", "stopped", 10 + i, None if i % 2 else 100 + i, True, i % 2 == 0]
        for i in range(5)
    ]
    expected[2] = ["", "complete", 0, None, False, False]  # not pending or streaming: untouched
    assert result["saved"] == expected
    if backend == "postgresql":
        assert result["refused"] == ["django.db.utils", "django.db.utils"]
    else:  # SQLite keeps what it is given
        assert result["refused"] == [None, None]
