"""What one socket has been sent of the answers it follows: the stream rules, without I/O.

A `Follower` takes the events of chat.events (deltas, snapshots, `done`, new
messages) in the order they reach its socket and appends the frames to send
to a list. It never waits, reads a clock or touches a socket, so every rule
below is tested directly (tests/test_follow.py):

- The deltas of an answer go out in seq order, each exactly once.
- A socket that meets an answer it cannot continue (it joined mid-answer, or
  a seq is missing because an event was lost) needs a snapshot: the answer's
  id goes into `wanted`, its deltas are held, and when the snapshot comes the
  socket gets it and then the held deltas past its seq. The text a client
  builds is never wrong, only sometimes late.
- `done` ends the answer; with protocol v2 it leaves out the text when the
  socket already has all of it.

The frames are what docs/websocket-protocol.md describes: a dict is a JSON
object frame; a str is a v2 bare delta (the next seq of the one answer the
socket follows), to be sent as a JSON string.
"""

from __future__ import annotations

from chat.events import ACTIVE

_UNKNOWN = object()


class Follower:
    """The stream state of one socket. `watch` a conversation, then feed it events."""

    __slots__ = ("compact", "conversation", "held", "streams", "wanted")

    def __init__(self, *, compact: bool) -> None:
        self.compact = compact  # protocol v2: bare-string deltas, `done` without known text
        self.conversation: int | None = None
        # Per followed answer: the last seq sent, or None while a snapshot is awaited.
        self.streams: dict[int, int | None] = {}
        self.held: dict[int, list[dict]] = {}  # deltas that arrived while awaiting a snapshot
        self.wanted: list[int] = []  # answers whose snapshot must be asked for (drained by the caller)

    def watch(self, conversation_id: int) -> None:
        """Follow the answers of this conversation (and forget those of the last one)."""
        self.conversation = conversation_id
        self.streams.clear()
        self.held.clear()
        self.wanted.clear()

    def join(self, message_id: int) -> None:
        """An answer in progress whose text so far this socket lacks: ask for a snapshot."""
        self.streams[message_id] = None
        self.held[message_id] = []
        if message_id not in self.wanted:
            self.wanted.append(message_id)

    def awaiting(self) -> list[int]:
        """The answers whose snapshot this socket still waits for."""
        return [m for m, seq in self.streams.items() if seq is None]

    # ---- events --------------------------------------------------------------

    def delta(self, event: dict, out: list) -> None:
        message_id, seq = event["message"], event["seq"]
        last = self.streams.get(message_id, _UNKNOWN)
        if last is _UNKNOWN:
            if event["conversation"] != self.conversation:
                return  # an answer of a conversation this socket no longer watches
            self.join(message_id)  # it missed the start (a lost event): snapshot first
            last = None
        if last is None:
            self.held[message_id].append(event)
            return
        if seq <= last:
            return  # already covered by a snapshot
        if seq != last + 1:
            self.join(message_id)  # a gap: never show wrong text
            self.held[message_id].append(event)
            return
        self.streams[message_id] = seq
        if self.compact and "reset" not in event and len(self.streams) == 1:
            out.append(event["text"])
            return
        frame = {"type": "delta", "message": message_id, "seq": seq, "text": event["text"]}
        if "reset" in event:
            frame["reset"] = True
        out.append(frame)

    def snapshot(self, event: dict, out: list) -> None:
        message_id = event["message"]
        if self.streams.get(message_id, _UNKNOWN) is not None:
            return  # not awaited: no longer followed, or already continuing
        held = self.held.pop(message_id, [])
        self.streams[message_id] = event["seq"]
        out.append({"type": "snapshot", "message": message_id, "seq": event["seq"], "content": event["content"]})
        for delta in held:
            self.delta(delta, out)  # those up to the snapshot's seq are dropped there

    def done(self, event: dict, out: list) -> None:
        message_id = event["message"]
        followed = self.streams.pop(message_id, None)
        self.held.pop(message_id, None)
        if message_id in self.wanted:
            self.wanted.remove(message_id)
        frame = {"type": "done", "message": message_id, "status": event["status"], "error": event["error"]}
        if "model" in event:
            frame["model"] = event["model"]
        final_seq = event.get("seq")
        if final_seq is not None:
            frame["seq"] = final_seq
        # v2 leaves the text out when this socket already has all of it; v1
        # always sends it (the client replaces its text with it).
        if not (self.compact and final_seq is not None and followed == final_seq):
            frame["content"] = event["content"]
        out.append(frame)

    def message(self, event: dict, out: list, *, ref: str | None = None) -> None:
        data = event["message"]
        frame = {"type": "message", "message": data}
        if ref is not None:
            frame["ref"] = ref
        if data["role"] == "assistant" and data["status"] in ACTIVE and data["id"] not in self.streams:
            self.streams[data["id"]] = 0  # a new answer: its deltas start at seq 1
        out.append(frame)
