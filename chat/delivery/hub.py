"""The Hub: delivering answers' events to the sockets that follow them, one per process.

The hot path. An answer running in this process (chat.generation) hands its
new text to the hub; once per turn of the event loop the hub makes it one
seq-numbered event, runs it through the `Follower` of every socket of this
process that watches the conversation (chat.follow: the seq/snapshot/gap
rules) and sends the frames. No channel layer, no task woken per socket: one
delivery task sends whatever queued during the tick.

Other processes (several daphne processes behind Redis) get only what they
need, through the channel layer:
- the hub joins the layer group of each user with a socket here (one
  membership per process, not per socket); rare events (messages, `done`,
  titles) go to their owner's group and each process hands them to the
  sockets watching their conversation;
- an answer's deltas go only to the processes that asked to follow it
  (`generation.follow`: a snapshot first, then every event, in batches); the
  asking process keeps a mirror of the answer for its own sockets.

When the layer fails (Redis restarts), chat/delivery/link.py drops and logs
what it cannot send and joins its groups again once the layer is back; the
sockets heal by the Follower's rules (a gap asks for a snapshot) and by the
watchdog, which ends an answer that went quiet from its saved row.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

import orjson

from chat import events
from chat.delivery.link import LayerLink
from chat.selectors import message_states

logger = logging.getLogger(__name__)

# Seconds without an event after which an answer run elsewhere is checked.
QUIET = 3.0
# Answers that ended recently: their late events are dropped, not healed.
ENDED_KEPT = 4096


def encode(frame) -> bytes:
    """A frame as the UTF-8 bytes of websocket text: compact JSON, raw UTF-8
    (fewer bytes on the wire). orjson: a tenth of `json.dumps`'s time for a
    delta frame, which every streamed delta pays; int keys become strings, as
    `json.dumps` makes them."""
    return orjson.dumps(frame, option=orjson.OPT_NON_STR_KEYS)


@dataclass(slots=True)
class Mirror:
    """An answer run by another process, as this process last heard of it."""

    conversation: int
    seq: int | None = None  # None until a snapshot says where it stands
    text: str = ""
    asked: float = -1e9  # loop time of the last follow request


class Hub:
    """The sockets of this process and the answers they follow. Created by the
    generation manager (one per event loop); `start` joins the channel layer."""

    def __init__(self, layer, *, answers: dict, on_stop) -> None:
        self.link = LayerLink(layer, on_event=self._remote, on_back=self._ask_again)
        self.answers = answers  # message id → Generation running in this process
        self.on_stop = on_stop  # called with a message id asked to stop from elsewhere
        self.by_conversation: dict[int, set] = {}
        self.by_user: dict[int, set] = {}
        self.mirrors: dict[int, Mirror] = {}
        self.heard: dict[int, float] = {}  # answers run elsewhere → loop time of their last event
        self.ended: OrderedDict[int, None] = OrderedDict()
        self.sources: list = []  # generations with new text
        self.dirty: list = []  # sockets with frames to send
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._asks: set[asyncio.Task] = set()  # follow requests being sent

    @property
    def channel(self) -> str | None:
        """This process's channel in the layer (None until started)."""
        return self.link.channel

    async def start(self) -> None:
        await self.link.start()
        await self.link.join(events.ANSWERS_GROUP)
        self._tasks = [
            asyncio.create_task(self._deliver_forever(), name="hub-deliver"),
            asyncio.create_task(self._watchdog(), name="hub-watchdog"),
        ]

    async def close(self) -> None:
        """Send what is queued (the last `done` events), then stop."""
        await self.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.link.close()

    # ---- sockets ---------------------------------------------------------------

    async def socket_add(self, sock) -> None:
        """A socket opened. It needs: `follower`, `out` (list), `user_id`,
        `paused`, `queued`, `async send_frames(frames)` and
        `session_event(event)` (chat/signouts.py)."""
        self.by_user.setdefault(sock.user_id, set()).add(sock)
        await self.link.join(events.user_group(sock.user_id))

    async def socket_remove(self, sock) -> None:
        self._leave_conversation(sock)
        members = self.by_user.get(sock.user_id)
        if members is not None:
            members.discard(sock)
            if not members:
                del self.by_user[sock.user_id]
        await self.link.leave(events.user_group(sock.user_id))

    def watch(self, sock, conversation_id: int) -> None:
        """The socket follows this conversation's answers (and no longer the last
        one's). Local only: other processes' events of it come through the
        user's group, joined when the socket opened (events.user_group)."""
        if sock.follower.conversation == conversation_id:
            return
        self._leave_conversation(sock)
        sock.follower.watch(conversation_id)
        self.by_conversation.setdefault(conversation_id, set()).add(sock)

    def _leave_conversation(self, sock) -> None:
        old = sock.follower.conversation
        if old is None:
            return
        members = self.by_conversation.get(old)
        if members is not None:
            members.discard(sock)
            if not members:
                del self.by_conversation[old]
        sock.follower.conversation = None

    def join_answer(self, sock, message_id: int) -> None:
        """The socket meets an answer in progress (it opened the conversation)."""
        sock.follower.join(message_id)
        self._serve_wanted(sock)

    def release(self, sock) -> None:
        """Send what queued while the socket was paused (e.g. behind its history)."""
        sock.paused = False
        if sock.out:
            self._mark(sock)

    # ---- events ------------------------------------------------------------------

    def touch(self, generation) -> None:
        """An answer of this process received text; it goes out this tick."""
        if not generation.queued:
            generation.queued = True
            self.sources.append(generation)
            self._wake.set()

    def drain(self, generation) -> None:
        """Publish what an answer received and has not published yet, now."""
        generation.queued = False
        if generation.has_pending():
            self._delta_out(generation.conversation_id, generation.take_event(), generation.remotes)

    def publish(self, event: dict, *, user: int, ref_socket=None, ref: str | None = None, remotes=()) -> None:
        """A message, `done` or conversation event of this process, of a
        conversation `user` owns: to its own sockets now, and to the other
        processes with a socket of that user through the layer, queued behind
        the deltas already queued for them (LayerLink.group_send_later).
        `remotes`, the processes following the answer, also get it directly,
        in the batch with its last deltas."""
        self._local(event, ref_socket=ref_socket, ref=ref)
        for channel in remotes:
            self.link.send_later(channel, event)
        self.link.group_send_later(events.user_group(user), {**event, "origin": self.channel})

    def _local(self, event: dict, *, ref_socket=None, ref: str | None = None) -> None:
        kind = event["type"]
        if kind == events.DONE:
            message_id = event["message"]
            self.mirrors.pop(message_id, None)
            self.heard.pop(message_id, None)
            self.ended[message_id] = None
            if len(self.ended) > ENDED_KEPT:
                self.ended.popitem(last=False)
            for sock in self.by_conversation.get(event["conversation"], ()):
                sock.follower.done(event, sock.out)
                self._mark(sock)
        elif kind == events.MESSAGE:
            data = event["message"]
            watchers = self.by_conversation.get(data["conversation"], ())
            remote = data["id"] not in self.answers and data["role"] == "assistant" and data["status"] in events.ACTIVE
            if remote and watchers:
                # A new answer of another process, reachable from now on: its
                # text comes from there (a snapshot first, then its events).
                self._ask_follow(data["id"], data["conversation"], again=True)
            for sock in watchers:
                sock.follower.message(event, sock.out, ref=ref if sock is ref_socket else None)
                if remote:
                    sock.follower.join(data["id"])
                    self._serve_wanted(sock)
                self._mark(sock)
        elif kind == events.CONVERSATION:
            frame = {"type": "conversation", "conversation": event["conversation"]}
            for sock in self.by_user.get(event["user"], ()):
                sock.out.append(frame)
                self._mark(sock)

    def _delta_out(self, conversation_id: int, event: dict, remotes) -> None:
        for sock in self.by_conversation.get(conversation_id, ()):
            follower = sock.follower
            follower.delta(event, sock.out)
            if follower.wanted:
                self._serve_wanted(sock)
            self._mark(sock)
        for channel in remotes:
            self.link.send_later(channel, event)

    def _mark(self, sock) -> None:
        if not sock.queued and sock.out:
            sock.queued = True
            self.dirty.append(sock)
            self._wake.set()

    async def ask_owner(self, request: dict) -> None:
        """A request for the process running an answer (events.STOP, events.FOLLOW),
        wherever it runs: every other process hears it, the one running it acts."""
        await self.link.group_send(events.ANSWERS_GROUP, {**request, "origin": self.channel})

    async def _deliver_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Publish the answers' new text and send every frame that queued."""
        while self.sources or self.dirty:
            sources, self.sources = self.sources, []
            for generation in sources:
                self.drain(generation)
            dirty, self.dirty = self.dirty, []
            for sock in dirty:
                sock.queued = False
                if sock.paused:
                    continue  # `release` queues it again
                frames, sock.out = sock.out, []
                try:
                    await sock.send_frames(frames)
                except Exception:  # one broken socket must not stop the others
                    logger.exception("sending to a socket failed")

    # ---- snapshots -----------------------------------------------------------------

    def _serve_wanted(self, sock) -> None:
        """Give the socket the snapshots it needs, from this process if it can."""
        follower = sock.follower
        while follower.wanted:
            message_id = follower.wanted.pop(0)
            local = self.answers.get(message_id)
            if local is not None:
                follower.snapshot(local.snapshot_event(), sock.out)
                continue
            mirror = self.mirrors.get(message_id)
            if mirror is not None and mirror.seq is not None:
                follower.snapshot(
                    events.snapshot(message=message_id, seq=mirror.seq, content=mirror.text), sock.out
                )
                continue
            self._ask_follow(message_id, follower.conversation)
        self._mark(sock)

    def _ask_follow(self, message_id: int, conversation_id: int | None, *, again: bool = False) -> None:
        """Ask the process running the answer for a snapshot and its events."""
        if message_id in self.ended or conversation_id is None:
            return
        mirror = self.mirrors.get(message_id)
        if mirror is None:
            mirror = self.mirrors[message_id] = Mirror(conversation=conversation_id)
        now = asyncio.get_running_loop().time()
        if not again and mirror.seq is None and now - mirror.asked < QUIET:
            return  # asked already; the watchdog asks again if nothing comes
        mirror.asked = now
        mirror.seq = None
        self.heard.setdefault(message_id, now)
        request = {"type": events.FOLLOW, "message": message_id, "reply_to": self.channel}
        task = asyncio.get_running_loop().create_task(self.ask_owner(request))
        # The loop keeps only a weak reference to a task: hold it until it is done.
        self._asks.add(task)
        task.add_done_callback(self._asks.discard)

    def follow_request(self, message_id: int, reply_to: str) -> None:
        """Another process follows an answer of this one: a snapshot, then its events."""
        generation = self.answers.get(message_id)
        if generation is None:
            return  # ended (its `done` went to its owner's group) or never here
        self.drain(generation)  # everything up to the snapshot's seq is in it
        generation.remotes.add(reply_to)
        snap = generation.snapshot_event()
        snap["conversation"] = generation.conversation_id
        self.link.send_later(reply_to, snap)

    # ---- other processes -------------------------------------------------------------

    def _ask_again(self) -> None:
        """The layer is back after an outage: ask again for every answer followed from here."""
        for message_id, mirror in list(self.mirrors.items()):
            self._ask_follow(message_id, mirror.conversation, again=True)

    def _remote(self, event: dict) -> None:
        kind = event.get("type")
        if event.get("origin") == self.channel:
            return  # this process's own event, delivered locally already
        if kind == events.BATCH:
            for item in event["events"]:
                self._mirror_event(item)
        elif kind in (events.MESSAGE, events.DONE, events.CONVERSATION):
            if kind == events.DONE:
                if event["message"] in self.ended:
                    return
                mirror = self.mirrors.get(event["message"])
                if mirror is not None and mirror.seq is not None and mirror.seq < event.get("seq", 0):
                    return  # its own copy follows the last deltas (the watchdog covers a loss)
            self._local(event)
        elif kind == events.FOLLOW:
            self.follow_request(event["message"], event["reply_to"])
        elif kind == events.SESSIONS:
            for sock in list(self.by_user.get(event["user"], ())):
                sock.session_event(event)
        elif kind == events.STOP:
            self.on_stop(event["message"])

    def _mirror_event(self, event: dict) -> None:
        message_id = event["message"]
        if message_id in self.ended:
            return
        if event["type"] == events.DONE:
            self._local(event)
            return
        mirror = self.mirrors.get(message_id)
        if mirror is None:
            return  # nobody here follows it any more
        self.heard[message_id] = asyncio.get_running_loop().time()
        if event["type"] == events.SNAPSHOT:
            mirror.seq, mirror.text = event["seq"], event["content"]
            for sock in self.by_conversation.get(mirror.conversation, ()):
                if sock.follower.streams.get(message_id, 0) is None:
                    sock.follower.snapshot(event, sock.out)
                    self._serve_wanted(sock)
            return
        if mirror.seq is not None:
            if event["seq"] == mirror.seq + 1:
                mirror.seq = event["seq"]
                mirror.text = event["text"] if "reset" in event else mirror.text + event["text"]
            elif event["seq"] > mirror.seq + 1:
                self._ask_follow(message_id, mirror.conversation, again=True)  # lost events
            else:
                return  # older than the snapshot
        self._delta_out(mirror.conversation, event, ())

    # ---- healing -----------------------------------------------------------------------

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(QUIET / 2)
            try:
                await self.check_quiet()
            except Exception:  # retried next round
                logger.exception("checking quiet answers failed")

    async def check_quiet(self) -> None:
        """End from its saved row an answer run elsewhere that went quiet (its
        `done` was lost, its process died); ask again for one still running."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        followed: dict[int, int] = {}
        for conversation_id, socks in self.by_conversation.items():
            for sock in socks:
                for message_id in sock.follower.streams:
                    if message_id not in self.answers:
                        followed[message_id] = conversation_id
        for message_id in [m for m in self.heard if m not in followed]:
            del self.heard[message_id]
        quiet = [m for m in followed if now - self.heard.setdefault(m, now) >= QUIET]
        if not quiet:
            return
        for message_id in quiet:
            self.heard[message_id] = now
        states = await message_states(message_ids=quiet)
        for message_id in quiet:
            state = states.get(message_id)
            if state is not None and state["status"] in events.ACTIVE:
                self._ask_follow(message_id, followed[message_id], again=True)
                continue
            if message_id in self.answers:
                continue  # it started here meanwhile
            self._local(
                events.done(
                    message=message_id,
                    conversation=followed[message_id],
                    status=state["status"] if state else "failed",
                    content=state["content"] if state else "",
                    error=state["error"] if state else "This answer was deleted.",
                )
            )
