"""Conversation titles: the provisional one from the first message, the short
one after the first answer."""

import pytest

from chat.services.titles import TITLE_CHARS, markdown_plain, title_from_exchange, title_from_text


@pytest.mark.parametrize(
    ("question", "answer", "title"),
    [
        ("Can you explain how herons hunt in shallow water?", "They wait.", "How herons hunt in shallow water"),
        (
            "Please tell me about the history of the Roman aqueducts, in detail.",
            "",
            "About the history of the Roman aqueducts…",
        ),
        ("hi", "# Greetings and welcome\n\nHello!", "Greetings and welcome"),
        # Nothing left after the greeting and no heading: the question stays.
        ("Hi there", "Hello! How can I help?", "Hi there"),
        ("hello", "Hello!", "hello"),
        ("Привет, расскажи про цапель", "Цапли…", "Расскажи про цапель"),
    ],
)
def test_title_from_exchange(question, answer, title):
    assert title_from_exchange(question, answer) == title


def test_provisional_title_is_the_first_line_trimmed():
    assert title_from_text("  Why   is\nthe sky blue?  ") == "Why is the sky blue?"
    long = "word " * 40
    assert len(title_from_text(long)) == TITLE_CHARS and title_from_text(long).endswith("…")


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        ("Hello! Can you show me **markdown**?", "Hello! Can you show me markdown?"),
        ("# A heading\n> a *quote*", "A heading a quote"),
        ("Run `make test` and see [the docs](https://example.com)", "Run make test and see the docs"),
        ("- one\n- __two__\n1. ~~three~~", "one two three"),
        ("```python\nprint(1)\n```", "print(1)"),
        # Not Markdown marks: kept.
        ("snake_case names and 2 * 3 = 6", "snake_case names and 2 * 3 = 6"),
    ],
)
def test_markdown_is_taken_out_of_titles(markdown, plain):
    assert markdown_plain(markdown) == plain


def test_titles_made_from_markdown_questions_are_plain():
    question = "Hello! Can you show me **markdown** with `code`?"
    assert title_from_text(question) == "Hello! Can you show me markdown with code?"
    assert "*" not in title_from_exchange(question, "Sure") and "`" not in title_from_exchange(question, "Sure")
    assert title_from_exchange("**hi**", "## *Greetings*, friend") == "Greetings, friend"


@pytest.mark.django_db
def test_a_batch_retitles_only_conversations_whose_one_complete_answer_is_their_first(make_user):
    """conversations_autotitle for several conversations at once: the first
    complete answer titles its conversation; a second one, one that failed,
    a title the user chose, or an answer without its question do not."""
    from chat.models import Conversation, Message
    from chat.services.conversations import conversations_autotitle

    user = make_user("titler")
    question = "Can you explain how herons hunt in shallow water?"

    def conversation(*answers, title=None, orphan=False):
        chat = Conversation.objects.create(owner=user, title=title_from_text(question) if title is None else title)
        asked = Message.objects.create(conversation=chat, role=Message.Role.USER, content=question)
        for status in answers:
            Message.objects.create(
                conversation=chat, role=Message.Role.ASSISTANT, content="They wait.", status=status,
                parent=None if orphan else asked,
            )  # fmt: skip
        return chat

    first = conversation(Message.Status.COMPLETE)
    after_a_failure = conversation(Message.Status.FAILED, Message.Status.COMPLETE)
    second = conversation(Message.Status.COMPLETE, Message.Status.COMPLETE)
    failed = conversation(Message.Status.FAILED)
    named = conversation(Message.Status.COMPLETE, title="Herons")
    orphan = conversation(Message.Status.COMPLETE, orphan=True)
    ids = [first.pk, after_a_failure.pk, second.pk, failed.pk, named.pk, orphan.pk, first.pk]
    retitled = conversations_autotitle.func(conversation_ids=ids)
    short = "How herons hunt in shallow water"
    assert [c.title if c else None for c in retitled] == [short, short, None, None, None, None, short]
    titles = dict(Conversation.objects.filter(pk__in=ids).values_list("pk", "title"))
    assert titles == {
        first.pk: short, after_a_failure.pk: short, second.pk: title_from_text(question),
        failed.pk: title_from_text(question), named.pk: "Herons", orphan.pk: title_from_text(question),
    }  # fmt: skip
