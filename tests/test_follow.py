"""The stream rules of one socket (chat.follow.Follower): no I/O, so every case directly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chat import events
from chat.follow import Follower

CONV, ANSWER = 7, 42


def delta(seq: int, text: str, *, message: int = ANSWER, conversation: int = CONV, reset: bool = False) -> dict:
    return events.delta(message=message, conversation=conversation, seq=seq, text=text, reset=reset)


def placeholder(message: int = ANSWER, status: str = "pending") -> dict:
    return events.message(
        data={"id": message, "conversation": CONV, "role": "assistant", "status": status, "content": ""}
    )


def following(*, compact: bool = False) -> Follower:
    follower = Follower(compact=compact)
    follower.watch(CONV)
    follower.message(placeholder(), [])
    return follower


def test_deltas_in_order_become_frames_v1():
    follower, out = following(), []
    follower.delta(delta(1, "Hel"), out)
    follower.delta(delta(2, "lo"), out)
    assert out == [
        {"type": "delta", "message": ANSWER, "seq": 1, "text": "Hel"},
        {"type": "delta", "message": ANSWER, "seq": 2, "text": "lo"},
    ]


def test_v2_sends_bare_strings_for_the_one_answer_followed():
    follower, out = following(compact=True), []
    follower.delta(delta(1, "Hel"), out)
    follower.delta(delta(2, "lo", reset=True), out)
    assert out == ["Hel", {"type": "delta", "message": ANSWER, "seq": 2, "text": "lo", "reset": True}]


def test_v2_uses_objects_while_two_answers_are_followed():
    follower, out = following(compact=True), []
    follower.message(placeholder(message=43), out)
    follower.delta(delta(1, "a"), out)
    assert out[-1] == {"type": "delta", "message": ANSWER, "seq": 1, "text": "a"}


def test_a_duplicate_or_old_delta_is_dropped():
    follower, out = following(), []
    follower.delta(delta(1, "a"), out)
    follower.delta(delta(1, "a"), out)
    assert len(out) == 1


def test_a_gap_asks_for_a_snapshot_and_holds_the_deltas():
    follower, out = following(), []
    follower.delta(delta(1, "a"), out)
    follower.delta(delta(3, "c"), out)  # 2 was lost
    follower.delta(delta(4, "d"), out)
    assert follower.wanted == [ANSWER] and len(out) == 1
    follower.wanted.clear()
    follower.snapshot(events.snapshot(message=ANSWER, seq=3, content="abc"), out)
    assert out[1:] == [
        {"type": "snapshot", "message": ANSWER, "seq": 3, "content": "abc"},
        {"type": "delta", "message": ANSWER, "seq": 4, "text": "d"},
    ]
    assert follower.streams[ANSWER] == 4


def test_joining_mid_answer_waits_for_the_snapshot():
    follower, out = Follower(compact=True), []
    follower.watch(CONV)
    follower.join(ANSWER)
    follower.delta(delta(5, "e"), out)
    assert out == [] and follower.wanted == [ANSWER] and follower.awaiting() == [ANSWER]
    follower.snapshot(events.snapshot(message=ANSWER, seq=5, content="abcde"), out)
    assert out == [{"type": "snapshot", "message": ANSWER, "seq": 5, "content": "abcde"}]


def test_a_delta_of_an_unknown_answer_of_the_watched_conversation_asks_for_a_snapshot():
    follower, out = Follower(compact=False), []
    follower.watch(CONV)
    follower.delta(delta(9, "x"), out)
    assert out == [] and follower.wanted == [ANSWER]


def test_a_delta_of_another_conversation_is_ignored():
    follower, out = following(), []
    follower.delta(delta(1, "x", message=99, conversation=CONV + 1), out)
    assert out == [] and follower.wanted == []


def test_a_snapshot_nobody_waits_for_is_ignored():
    follower, out = following(), []
    follower.delta(delta(1, "a"), out)
    follower.snapshot(events.snapshot(message=ANSWER, seq=0, content=""), out)
    assert len(out) == 1 and follower.streams[ANSWER] == 1


def test_watching_another_conversation_forgets_the_last_one():
    follower, out = following(), []
    follower.join(43)
    follower.watch(CONV + 1)
    assert follower.streams == {} and follower.wanted == [] and follower.held == {}
    follower.delta(delta(2, "x"), out)
    assert out == []


def test_done_v2_leaves_out_the_text_the_socket_has():
    follower, out = following(compact=True), []
    follower.delta(delta(1, "Hi"), out)
    end = events.done(message=ANSWER, conversation=CONV, status="complete", content="Hi", error=None, seq=1)
    follower.done(end, out)
    assert out[-1] == {"type": "done", "message": ANSWER, "status": "complete", "error": None, "seq": 1}
    assert ANSWER not in follower.streams


def test_done_v2_carries_the_text_when_the_socket_missed_some():
    follower, out = following(compact=True), []
    end = events.done(message=ANSWER, conversation=CONV, status="complete", content="Hi", error=None, seq=1)
    follower.done(end, out)
    assert out[-1]["content"] == "Hi"


def test_done_v1_always_carries_the_text_and_from_a_saved_row_no_seq():
    follower, out = following(), []
    end = events.done(message=ANSWER, conversation=CONV, status="interrupted", content="Hi", error="Stopped.")
    follower.done(end, out)
    assert out[-1] == {
        "type": "done", "message": ANSWER, "status": "interrupted", "error": "Stopped.", "content": "Hi"
    }


def test_a_message_frame_echoes_ref_and_starts_following_a_new_answer():
    follower, out = Follower(compact=False), []
    follower.watch(CONV)
    follower.message(placeholder(), out, ref="r1")
    assert out == [{"type": "message", "message": placeholder()["message"], "ref": "r1"}]
    assert follower.streams == {ANSWER: 0}
    follower.message(placeholder(message=50, status="complete"), out)
    assert 50 not in follower.streams


# ---- property: whatever is lost, the text a client builds is never wrong ----------


def client_text(frames: list, *, compact: bool) -> tuple[str, bool]:
    """What the browser shows for ANSWER, replaying frames as docs/websocket-protocol.md says."""
    text, ended = "", False
    for frame in frames:
        if isinstance(frame, str):
            assert compact
            text += frame
        elif frame["type"] == "snapshot":
            text = frame["content"]
        elif frame["type"] == "delta":
            text = frame["text"] if frame.get("reset") else text + frame["text"]
        elif frame["type"] == "done":
            text = frame.get("content", text)
            ended = True
    return text, ended


pieces = st.lists(st.text(alphabet="abcdefgh é", min_size=1, max_size=4), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    pieces=pieces,
    lost=st.sets(st.integers(min_value=1, max_value=40)),
    resets=st.sets(st.integers(min_value=1, max_value=40), max_size=3),
    joined_at=st.integers(min_value=0, max_value=40),
    snapshot_delay=st.integers(min_value=0, max_value=5),
    compact=st.booleans(),
    done_lost=st.booleans(),
)
def test_text_is_a_prefix_until_done_then_exact(pieces, lost, resets, joined_at, snapshot_delay, compact, done_lost):
    """Events are lost (a full channel, a Redis blip), the socket joins at any point,
    snapshots come late: at every step the client's text is what the answer said at
    some seq (never wrong), and after `done` it is the final text."""
    follower, out = Follower(compact=compact), []
    follower.watch(CONV)
    truth = [""]  # the answer's text after each seq
    if joined_at == 0:
        follower.message(placeholder(), out)
    waiting: list[int] = []  # seqs at which a requested snapshot will be served
    for seq, piece in enumerate(pieces, start=1):
        reset = seq in resets
        truth.append(piece if reset else truth[-1] + piece)
        if joined_at and seq == joined_at:
            follower.join(ANSWER)
        if joined_at and seq < joined_at:
            continue
        if seq not in lost:
            follower.delta(delta(seq, piece, reset=reset), out)
        if follower.wanted:
            follower.wanted.clear()
            waiting.append(seq + snapshot_delay)
        if waiting and waiting[0] <= seq:
            waiting.pop(0)
            follower.snapshot(events.snapshot(message=ANSWER, seq=seq, content=truth[seq]), out)
        shown, _ = client_text(out, compact=compact)
        if any(isinstance(f, dict) and f["type"] == "snapshot" for f in out) or joined_at == 0:
            assert shown in truth, "the client shows text the answer never had"
    final = truth[-1]
    end = events.done(
        message=ANSWER, conversation=CONV, status="complete", content=final, error=None, seq=len(pieces)
    )
    if done_lost:  # healed from the saved row: no seq
        end = events.done(message=ANSWER, conversation=CONV, status="complete", content=final, error=None)
    follower.done(end, out)
    shown, ended = client_text(out, compact=compact)
    assert ended and shown == final
    assert ANSWER not in follower.streams and ANSWER not in follower.held
