"""Starting answers (chat/services/answers.py): checks and writes of a regenerate.

The races themselves (two sockets at one instant, one or two processes) are
tested with real processes in tests/test_races.py.
"""

import pytest
from asgiref.sync import async_to_sync

from chat.models import Message
from chat.selectors import NotFound
from chat.services.answers import Busy, NotAnAnswer, answer_begin, answer_regenerate
from chat.services.conversations import exchange_create
from chat.services.limits import LimitExceeded

pytestmark = pytest.mark.django_db

regenerate = async_to_sync(answer_regenerate)
begin = async_to_sync(answer_begin)


@pytest.fixture
def answered(make_user):
    """A user with one finished exchange: (user, conversation, question, answer)."""
    user = make_user("asker")
    conversation, question, answer = exchange_create(
        user=user, conversation=None, content="What is a lease?", model="gpt-old"
    )
    Message.objects.filter(pk=answer.pk).update(status=Message.Status.COMPLETE, content="A contract.")
    answer.refresh_from_db()
    return user, conversation, question, answer


def test_regenerate_writes_a_new_answer_to_the_same_question(answered):
    user, conversation, question, answer = answered
    begun = regenerate(user=user, message_id=answer.pk)
    assert begun.conversation.pk == conversation.pk and not begun.created
    assert begun.user_message.pk == question.pk
    assert begun.assistant.pk != answer.pk
    assert begun.assistant.parent_id == question.pk
    assert begun.assistant.status == Message.Status.PENDING and begun.assistant.content == ""
    assert begun.assistant.model == "gpt-old", "the old answer's model when none is named"
    assert begun.history[-1] == {"role": "user", "content": "What is a lease?"}
    assert all(m["content"] != "A contract." for m in begun.history), "the old answer is not history"
    # The old answer stays, as an earlier branch.
    assert Message.objects.get(pk=answer.pk).content == "A contract."


def test_regenerate_with_another_model(answered):
    user, _, _, answer = answered
    assert regenerate(user=user, message_id=answer.pk, model="gpt-new").assistant.model == "gpt-new"


def test_regenerate_of_someone_elses_or_a_missing_answer_is_not_found(answered, make_user):
    _, _, _, answer = answered
    stranger = make_user("stranger")
    with pytest.raises(NotFound):
        regenerate(user=stranger, message_id=answer.pk)
    with pytest.raises(NotFound):
        regenerate(user=answered[0], message_id=answer.pk + 1000)
    assert Message.objects.count() == 2


def test_only_an_answer_can_be_regenerated(answered):
    user, _, question, _ = answered
    with pytest.raises(NotAnAnswer):
        regenerate(user=user, message_id=question.pk)
    assert Message.objects.count() == 2


def test_regenerate_while_an_answer_is_written_is_busy(answered):
    user, _, _, answer = answered
    first = regenerate(user=user, message_id=answer.pk)
    assert first.assistant.status == Message.Status.PENDING
    with pytest.raises(Busy):
        regenerate(user=user, message_id=answer.pk)
    Message.objects.filter(pk=first.assistant.pk).update(status=Message.Status.STREAMING)
    with pytest.raises(Busy):
        regenerate(user=user, message_id=first.assistant.pk)
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 2, "nothing more was written"


def test_send_while_a_regenerated_answer_is_written_is_busy(answered):
    user, conversation, _, answer = answered
    regenerate(user=user, message_id=answer.pk)
    with pytest.raises(Busy):
        begin(user=user, conversation_id=conversation.pk, content="And then?")


def test_regenerate_is_refused_at_the_concurrent_answers_limit(answered, settings):
    user, _, _, answer = answered
    settings.CHAT_CONCURRENT_ANSWERS = 1
    exchange_create(user=user, conversation=None, content="another chat")  # one pending answer
    with pytest.raises(LimitExceeded) as refused:
        regenerate(user=user, message_id=answer.pk)
    assert refused.value.code == "too_many_answers"
