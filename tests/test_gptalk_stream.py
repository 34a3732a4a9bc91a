"""Unit and property tests of the GPTalk stream parser and delta logic (no I/O)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.upstream import gptalk_stream
from chat.upstream.errors import ProtocolError, UpstreamError
from chat.upstream.gptalk_stream import (
    ContentReset,
    DeltaStream,
    content_delta,
    parse_line,
)
from chat.upstream.openai import CompletionParser

# Text that model output really contains, including the separators that
# str.splitlines / httpx's aiter_lines would wrongly split at.
TRICKY = "\u2028\u2029\u0085\r\x0b\x0c\x1c\x1d\x1e"
text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",)),  # any encodable character
        st.sampled_from(TRICKY + "é—«»✨😀\n\t\"\\"),
    ),
    max_size=30,
)


def apply(deltas: list[str], text_so_far: str = "") -> str:
    """The caller's rule from the GPTalk docstring."""
    for delta in deltas:
        text_so_far = str(delta) if isinstance(delta, ContentReset) else text_so_far + delta
    return text_so_far


def event(content: object, *, ensure_ascii: bool = True, newline: bytes = b"\n") -> bytes:
    payload = json.dumps({"content": content, "extra": 1}, ensure_ascii=ensure_ascii)
    return b"data: " + payload.encode("utf-8") + newline


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def run(chunks: list[bytes]) -> tuple[list[str], DeltaStream]:
    stream = DeltaStream()
    deltas: list[str] = []
    for chunk in chunks:
        deltas += stream.feed(chunk)
    deltas += stream.finish()
    return deltas, stream


# --- ContentReset and content_delta ---------------------------------------------


def test_content_reset_is_a_str_holding_the_whole_new_content():
    reset = ContentReset("new text")
    assert isinstance(reset, str)
    assert reset == "new text"
    assert str(reset) == "new text" and type(str(reset)) is str
    assert repr(reset) == "ContentReset('new text')"


def test_content_delta_extension_unchanged_and_rewrite():
    assert content_delta("", "Hel") == "Hel"
    assert content_delta("Hel", "Hello") == "lo"
    assert type(content_delta("Hel", "Hello")) is str
    assert content_delta("Hello", "Hello") == ""
    rewrite = content_delta("Hello", "Help")
    assert isinstance(rewrite, ContentReset) and rewrite == "Help"
    cleared = content_delta("Hello", "")
    assert isinstance(cleared, ContentReset) and cleared == ""


# --- single lines ---------------------------------------------------------------


def test_parse_line_reads_content_and_ignores_other_lines():
    assert parse_line(b'data: {"content": "hi", "unknown": [1]}') == "hi"
    assert parse_line(b'data: {"content": "hi"}\r') == "hi"
    assert parse_line(b'data: {"content": "\\u00e9t\xc3\xa9 \\ud83d\\ude00"}') == "\u00e9t\u00e9 \U0001f600"
    assert parse_line(b"") is None
    assert parse_line(b"\r") is None
    assert parse_line(b": keep-alive comment") is None
    assert parse_line(b"event: message") is None
    # Only "data: " with its space counts, as in the original client.
    assert parse_line(b'data:{"content": "hi"}') is None


@pytest.mark.parametrize(
    "line",
    [
        b"data: {not json",
        b'data: {"content": "\xff\xfe"}',  # not UTF-8
        b"data: ",
        b'data: ["content"]',
        b"data: null",
        b'data: {"text": "hi"}',
        b'data: {"content": 42}',
        b'data: {"content": null}',
        # Text no database or socket can carry: refused here, not at the save.
        b'data: {"content": "a\\ud800b"}',
    ],
)
def test_malformed_data_lines_raise_protocol_error(line):
    with pytest.raises(ProtocolError) as info:
        parse_line(line)
    assert isinstance(info.value, UpstreamError)
    assert info.value.message == str(info.value)


def test_stream_ends_at_done_and_ignores_the_rest():
    body = event("a") + b"data: [DONE]\n" + event("ab") + b"garbage {"
    deltas, stream = run([body])
    assert deltas == ["a"]
    assert stream.done


def test_done_with_crlf_and_without_final_newline():
    assert run([event("a", newline=b"\r\n") + b"data: [DONE]\r\n"])[1].done
    deltas, stream = run([event("a"), b"data: [DO", b"NE]"])
    assert deltas == ["a"] and stream.done


def test_last_line_without_newline_is_parsed_but_not_complete():
    deltas, stream = run([event("a"), event("ab", newline=b"")])
    assert deltas == ["a", "b"]
    assert not stream.done


def test_no_done_means_not_done():
    deltas, stream = run([event("a"), event("ab"), b"\n"])
    assert apply(deltas) == "ab"
    assert not stream.done


def test_unchanged_content_yields_nothing_and_a_clear_yields_an_empty_reset():
    deltas, _ = run([event("a") + event("a") + event("ab") + event("") + b"data: [DONE]\n"])
    assert deltas == ["a", "b", ContentReset("")]
    assert isinstance(deltas[-1], ContentReset)


def test_separators_inside_content_stay_inside():
    content = "one\u2028two\u0085three\rfour\u2029"
    for ensure_ascii in (True, False):
        deltas, stream = run([event(content, ensure_ascii=ensure_ascii) + b"data: [DONE]\n"])
        assert deltas == [content] and stream.done


def test_utf8_character_split_across_chunks():
    body = event("😀é", ensure_ascii=False) + b"data: [DONE]\n"
    cut = body.index("😀".encode()) + 2
    deltas, stream = run([body[:cut], body[cut:]])
    assert deltas == ["😀é"] and stream.done


def test_a_line_over_the_limit_raises(monkeypatch):
    monkeypatch.setattr(gptalk_stream, "MAX_LINE_BYTES", 64)
    stream = DeltaStream()
    with pytest.raises(ProtocolError) as info:
        for _ in range(10):
            stream.feed(b"data: " + b"x" * 10)
    assert info.value.message == "The GPTalk service sent a stream line that is far too long."


def test_the_openai_parser_words_the_line_limit_for_its_upstream(monkeypatch):
    monkeypatch.setattr(gptalk_stream, "MAX_LINE_BYTES", 64)
    parser = CompletionParser("The provider “Ollama”")
    with pytest.raises(ProtocolError) as info:
        for _ in range(10):
            parser.feed(b"data: " + b"x" * 10)
    assert info.value.message == "The provider “Ollama” sent a stream line that is far too long."


# --- properties -----------------------------------------------------------------

noise_line = st.sampled_from(
    [b"", b"\r", b": comment", b"event: message", b"data:no-space", b"id: 7"]
)


@st.composite
def streams(draw, contents_strategy):
    """(body bytes, contents, ends with DONE) with noise lines and mixed line endings."""
    contents = draw(contents_strategy)
    lines: list[bytes] = []
    for content in contents:
        lines += draw(st.lists(noise_line, max_size=2))
        payload = json.dumps({"content": content}, ensure_ascii=draw(st.booleans()))
        lines.append(b"data: " + payload.encode("utf-8"))
    done = draw(st.booleans())
    if done:
        lines.append(b"data: [DONE]")
    endings = [draw(st.sampled_from([b"\n", b"\r\n"])) for _ in lines]
    if lines and draw(st.booleans()):
        endings[-1] = b""  # the last line without newline
    body = b"".join(line + end for line, end in zip(lines, endings, strict=True))
    return body, contents, done


@settings(max_examples=300)
@given(streams(st.lists(text, max_size=8)), st.lists(st.integers(min_value=0), max_size=12))
def test_any_contents_any_chunking_rebuild_the_final_content(stream, cuts):
    body, contents, done = stream
    deltas, parser = run(chunked(body, cuts))
    assert apply(deltas) == (contents[-1] if contents else "")
    assert parser.done == done
    assert all(d or isinstance(d, ContentReset) for d in deltas)  # no empty plain deltas


@st.composite
def extensions(draw):
    final = draw(text)
    cuts = sorted(draw(st.lists(st.integers(0, len(final)), max_size=8)))
    return [final[:cut] for cut in cuts] + [final]


@settings(max_examples=300)
@given(streams(extensions()), st.lists(st.integers(min_value=0), max_size=12))
def test_pure_extensions_join_to_the_final_content(stream, cuts):
    body, contents, _done = stream
    deltas, _parser = run(chunked(body, cuts))
    assert not any(isinstance(d, ContentReset) for d in deltas)
    assert "".join(deltas) == contents[-1]


@given(text, text)
def test_content_delta_applies(previous, content):
    assert apply([content_delta(previous, content)], previous) == content
