"""Conversation titles: the provisional one from the first message, the short
one after the first answer."""

import pytest

from chat.services.titles import TITLE_CHARS, markdown_plain, title_from_exchange, title_from_text


@pytest.mark.parametrize(
    ("question", "answer", "title"),
    [
        ("Can you explain how herons hunt in shallow water?", "They wait.", "How herons hunt in shallow water"),
        ("Please tell me about the history of the Roman aqueducts, in detail.", "", "About the history of the Roman aqueducts…"),
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
