"""The chat websocket: who is this, what do they ask, is it theirs.

The protocol is documented in docs/websocket-protocol.md. Answers are written by
chat.generation, not here: this consumer only starts, stops and watches them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.consumer import get_handler_name
from django.conf import settings

from chat import generation as gen
from chat.models import Conversation, Message
from chat.selectors import NotFound, aconversation_get, amessage_get, amessage_list
from chat.serializers import conversation_data, message_data
from chat.services import conversations as conversation_services
from chat.providers.registry import model_is_offered
from chat.services.history import branch_messages, upstream_messages
from chat.services.answers import NEWEST, Busy, answer_begin
from chat.services.limits import LimitExceeded, limits_check

logger = logging.getLogger(__name__)

ACTIVE = (Message.Status.PENDING, Message.Status.STREAMING)

# Channel-layer events whose handlers never touch the database. Channels (4.2+)
# hops to the one database thread to close stale connections before every
# event it dispatches; for these that hop is pure cost, and it queued every
# delta of every socket behind the database work of all of them.
NO_DB_EVENTS = frozenset({"chat.delta", "chat.snapshot", "chat.done", "chat.message", "chat.conversation"})


class ClientError(Exception):
    """A frame the server refuses; turned into one `error` frame in `receive_json`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _has_unstorable_text(value) -> bool:
    """True if any key or string in a decoded frame holds a NUL or a lone
    surrogate (valid JSON escapes, but neither PostgreSQL nor a UTF-8 frame can
    carry them). A loop, not recursion: frames may nest a thousand levels."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _id_field(content: dict, name: str, *, nullable: bool = False) -> int | None:
    value = content.get(name, ...)
    if value is ... or (value is None and not nullable):
        raise ClientError("bad_field", f"The field '{name}' is required.")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClientError("bad_field", f"The field '{name}' must be a positive integer id.")
    return value


MODEL_ID_MAX = Message._meta.get_field("model").max_length


async def _model_field(content: dict) -> str:
    """The optional model id of a frame ("" means the default); it must be one
    that GET /api/models/ lists."""
    model = content.get("model", "")
    if model is None or model == "":
        return ""
    if not isinstance(model, str) or len(model) > MODEL_ID_MAX:
        raise ClientError("bad_field", "The field 'model' must be a model id (a short string).")
    model = model.strip()
    if model and not await model_is_offered(model):
        raise ClientError("bad_model", f"The model '{model}' is not offered here; pick one from the list.")
    return model


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One browser tab. Created per socket; `connect` runs at the handshake."""

    # The frame limit (also daphne's, see the serve command): the longest
    # allowed message, fully JSON-escaped, plus room for the JSON around it.
    max_frame_chars = settings.CHAT_WS_MAX_MESSAGE_BYTES
    # Seconds without an event after which a followed answer is checked in the DB.
    QUIET = 3.0
    watchdog: asyncio.Task | None = None

    @classmethod
    async def encode_json(cls, content) -> str:
        # No spaces, raw UTF-8: fewer bytes on the wire for every frame.
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False)

    async def dispatch(self, message: dict) -> None:
        if message["type"] in NO_DB_EVENTS:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

    # ---- websocket handlers --------------------------------------------------

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        self.user = user
        # Protocol version 2 (`/ws/chat/?v=2`): compact deltas, see docs/websocket-protocol.md.
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.compact = query.get("v") == ["2"]
        self.watching: int | None = None
        # Per answer being watched: the last seq sent, or None while a snapshot
        # is awaited (deltas are held in `pending` meanwhile).
        self.streams: dict[int, int | None] = {}
        self.pending: dict[int, list[dict]] = {}
        # When each followed answer was last heard of (loop time), for the watchdog.
        self.heard: dict[int, float] = {}
        self.manager = gen.get_manager()
        await self.manager.ensure_started()
        await self.channel_layer.group_add(gen.user_group(user.pk), self.channel_name)
        await self.accept()
        self.watchdog = asyncio.create_task(self.watch_streams())

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "user"):
            return
        if self.watchdog is not None:
            # Drop the reference too: the cancelled task keeps its CancelledError,
            # whose traceback holds watch_streams' frame and so `self` — a cycle
            # that kept this consumer, its scope and session until a full gc pass.
            self.watchdog.cancel()
            self.watchdog = None
        await self.channel_layer.group_discard(gen.user_group(self.user.pk), self.channel_name)
        if self.watching is not None:
            await self.channel_layer.group_discard(
                gen.conversation_group(self.watching), self.channel_name
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            if text_data is None:
                raise ClientError("bad_json", "Frames must be JSON text, not binary.")
            if len(text_data) > self.max_frame_chars:
                raise ClientError("too_long", "The frame is too large.")
            try:
                content = json.loads(text_data)
            except (ValueError, RecursionError):
                raise ClientError("bad_json", "The frame is not valid JSON.") from None
            if not isinstance(content, dict):
                raise ClientError("bad_json", "The frame must be a JSON object.")
            # Only an escape can smuggle in text no database or socket can carry.
            if "\\u" in text_data and _has_unstorable_text(content):
                raise ClientError(
                    "bad_json", "The frame has text that cannot be stored (a NUL or a lone surrogate)."
                )
        except ClientError as exc:
            await self.send_error(exc, ref=None)
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict, **kwargs) -> None:
        ref = content.get("ref") if isinstance(content.get("ref"), str) else None
        if ref is not None and len(ref) > 64:
            ref = None
        handlers = {
            "chat.send": self.command_send,
            "chat.stop": self.command_stop,
            "chat.regenerate": self.command_regenerate,
            "conversation.open": self.command_open,
        }
        try:
            kind = content.get("type")
            handler = handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise ClientError("bad_type", "Unknown or missing frame type.")
            await handler(content, ref)
        except ClientError as exc:
            await self.send_error(exc, ref=ref)
        except NotFound:
            await self.send_error(
                ClientError("not_found", "No such conversation or message among yours."), ref=ref
            )

    async def send_error(self, exc: ClientError, *, ref: str | None) -> None:
        frame = {"type": "error", "code": exc.code, "detail": exc.detail}
        if ref is not None:
            frame["ref"] = ref
        await self.send_json(frame)

    # ---- commands ------------------------------------------------------------

    async def command_send(self, content: dict, ref: str | None) -> None:
        conversation_id = _id_field(content, "conversation", nullable=True)
        text = content.get("content")
        if not isinstance(text, str) or not text.strip():
            raise ClientError("bad_field", "The message is empty.")
        if "parent" in content:
            # Editing an earlier message: the new one starts a branch after `parent`.
            parent_id = _id_field(content, "parent", nullable=True)
            if conversation_id is None and parent_id is not None:
                raise ClientError("bad_field", "A new conversation has no parent message.")
        else:
            parent_id = NEWEST
        model = await _model_field(content)
        # Every check and write in one trip to the database: a refused frame
        # leaves no trace (not even an empty conversation).
        try:
            begun = await answer_begin(
                user=self.user, conversation_id=conversation_id, content=text,
                parent_id=parent_id, model=model,
            )
        except LimitExceeded as exc:
            raise ClientError(exc.code, exc.detail) from None
        except Busy:
            raise ClientError(
                "busy", "An answer is still being written in this conversation: stop it or wait."
            ) from None
        conversation = begun.conversation
        await self.watch(conversation.pk)
        if begun.created:
            await self.channel_layer.group_send(
                gen.user_group(self.user.pk),
                {"type": "chat.conversation", "conversation": conversation_data(conversation)},
            )
        await self.publish_message(begun.user_message, ref=ref)
        await self.start_answer(conversation, begun.assistant, history=begun.history)

    async def command_stop(self, content: dict, ref: str | None) -> None:
        message = await amessage_get(user=self.user, message_id=_id_field(content, "message"))
        if message.role != Message.Role.ASSISTANT or message.status not in ACTIVE:
            raise ClientError("not_streaming", "That answer is not being written any more.")
        await self.manager.request_stop(message_id=message.pk)

    async def command_regenerate(self, content: dict, ref: str | None) -> None:
        old = await amessage_get(user=self.user, message_id=_id_field(content, "message"))
        if old.role != Message.Role.ASSISTANT or old.parent_id is None:
            raise ClientError("bad_field", "Only an answer can be regenerated.")
        conversation = old.conversation
        if await conversation.messages.filter(role=Message.Role.ASSISTANT, status__in=ACTIVE).aexists():
            raise ClientError(
                "busy", "An answer is still being written in this conversation: stop it or wait."
            )
        model = await _model_field(content) or old.model
        await self.check_limits()
        parent = await Message.objects.aget(pk=old.parent_id)
        assistant = await sync_to_async(conversation_services.assistant_placeholder_create)(
            conversation=conversation, parent=parent, model=model
        )
        await self.watch(conversation.pk)
        await self.start_answer(conversation, assistant)

    async def command_open(self, content: dict, ref: str | None) -> None:
        conversation = await aconversation_get(
            user=self.user, conversation_id=_id_field(content, "conversation")
        )
        await self.watch(conversation.pk)
        # Joined the group first, read the rows second: whatever finishes after
        # this read arrives as an event, so nothing falls between the two.
        messages = await amessage_list(conversation=conversation)
        await self.send_json(
            {
                "type": "history",
                "conversation": conversation_data(conversation),
                "messages": [message_data(m) for m in messages],
            }
        )
        for message in messages:
            if message.role == Message.Role.ASSISTANT and message.status in ACTIVE:
                await self.resync(message.pk)

    # ---- helpers -------------------------------------------------------------

    async def check_limits(self, *, message_chars: int = 0) -> None:
        """Refuse before anything is saved or sent upstream when a limit is reached."""
        try:
            await limits_check(user=self.user, message_chars=message_chars)
        except LimitExceeded as exc:
            raise ClientError(exc.code, exc.detail) from None

    async def watch(self, conversation_id: int) -> None:
        """Subscribe this socket to one conversation's answers (and leave the last one)."""
        if self.watching == conversation_id:
            return
        if self.watching is not None:
            await self.channel_layer.group_discard(
                gen.conversation_group(self.watching), self.channel_name
            )
        self.streams.clear()
        self.heard.clear()
        self.pending.clear()
        self.watching = conversation_id
        await self.channel_layer.group_add(gen.conversation_group(conversation_id), self.channel_name)

    def follow(self, message_id: int, seq: int | None) -> None:
        """Record the last seq sent for an answer (None: awaiting a snapshot)."""
        self.streams[message_id] = seq
        self.heard[message_id] = asyncio.get_running_loop().time()

    async def resync(self, message_id: int) -> None:
        """Get a snapshot of an answer in progress; hold its deltas until it comes."""
        self.follow(message_id, None)
        self.pending[message_id] = []
        local = self.manager.local_snapshot(message_id=message_id)
        if local is not None:
            await self.chat_snapshot(local)
            return
        await self.manager.request_snapshot(message_id=message_id, reply_to=self.channel_name)

    async def watch_streams(self) -> None:
        """Heal what the channel layer can lose: a snapshot reply or a `done`
        (a full channel drops events; a dead process sends nothing).

        Runs for the life of the socket. An answer this socket follows that has
        been quiet for QUIET seconds is checked against its saved row: ended →
        the `done` is sent from the row; still running and awaiting a snapshot
        → the snapshot is asked for again.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.QUIET / 2)
            now = loop.time()
            for message_id in [m for m, t in self.heard.items() if now - t >= self.QUIET]:
                self.heard[message_id] = now
                message = await Message.objects.filter(pk=message_id).only(
                    "pk", "status", "content", "error"
                ).afirst()
                if message_id not in self.streams:
                    continue  # ended while we looked
                if message is None or message.status not in ACTIVE:
                    await self.chat_done(
                        {
                            "message": message_id,
                            "status": message.status if message else Message.Status.FAILED,
                            "content": message.content if message else "",
                            "error": (message.error or None) if message else "This answer was deleted.",
                        }
                    )
                elif self.streams[message_id] is None:
                    await self.manager.request_snapshot(
                        message_id=message_id, reply_to=self.channel_name
                    )

    async def publish_message(self, message: Message, *, ref: str | None = None) -> None:
        await self.channel_layer.group_send(
            gen.conversation_group(message.conversation_id),
            {
                "type": "chat.message",
                "message": message_data(message),
                "ref": ref,
                "origin": self.channel_name,
            },
        )

    async def start_answer(
        self, conversation: Conversation, assistant: Message, *, history: list[dict] | None = None
    ) -> None:
        if history is None:
            messages = await amessage_list(conversation=conversation)
            chain = branch_messages(messages=messages, leaf_id=assistant.parent_id)
            history = upstream_messages(conversation=conversation, chain=chain)
        self.follow(assistant.pk, 0)
        await self.publish_message(assistant)
        await self.manager.start(
            message_id=assistant.pk,
            conversation_id=conversation.pk,
            history=history,
            model=assistant.model,
            owner_id=self.user.pk,
        )

    # ---- channel-layer handlers ----------------------------------------------

    async def chat_conversation(self, event: dict) -> None:
        await self.send_json({"type": "conversation", "conversation": event["conversation"]})

    async def chat_message(self, event: dict) -> None:
        frame = {"type": "message", "message": event["message"]}
        if event.get("ref") is not None and event.get("origin") == self.channel_name:
            frame["ref"] = event["ref"]
        message = event["message"]
        if message["role"] == Message.Role.ASSISTANT and message["status"] in ACTIVE:
            if message["id"] not in self.streams:
                self.follow(message["id"], 0)
        await self.send_json(frame)

    async def chat_delta(self, event: dict) -> None:
        message_id, seq = event["message"], event["seq"]
        if message_id not in self.streams:
            if event["conversation"] != self.watching:
                return  # queued before this socket switched conversations
            # An answer of the watched conversation whose start this socket
            # missed (a dropped event): get a snapshot first.
            await self.resync(message_id)
        last = self.streams[message_id]
        if last is None:
            self.pending[message_id].append(event)
            return
        if seq <= last:
            return  # already covered by a snapshot
        if seq != last + 1:
            # A gap (an event was dropped): heal with a snapshot, never show wrong text.
            await self.resync(message_id)
            if self.streams.get(message_id, 0) is None:
                self.pending[message_id].append(event)
            elif seq > self.streams[message_id]:
                await self.chat_delta(event)
            return
        self.follow(message_id, seq)
        if self.compact and not event.get("reset") and len(self.streams) == 1:
            # v2: the next piece of the one answer this socket follows, as a bare JSON string.
            await self.send(text_data=json.dumps(event["text"], ensure_ascii=False))
            return
        frame = {"type": "delta", "message": message_id, "seq": seq, "text": event["text"]}
        if event.get("reset"):
            frame["reset"] = True
        await self.send_json(frame)

    async def chat_snapshot(self, event: dict) -> None:
        message_id = event["message"]
        if message_id not in self.streams:
            return  # no longer watched
        held = self.pending.pop(message_id, [])
        self.follow(message_id, event["seq"])
        await self.send_json(
            {"type": "snapshot", "message": message_id, "seq": event["seq"], "content": event["content"]}
        )
        for delta in held:
            if delta["seq"] > self.streams[message_id]:
                await self.chat_delta(delta)

    async def chat_done(self, event: dict) -> None:
        followed = self.streams.pop(event["message"], None)
        self.heard.pop(event["message"], None)
        self.pending.pop(event["message"], None)
        frame = {
            "type": "done",
            "message": event["message"],
            "status": event["status"],
            "error": event["error"],
        }
        if event.get("model"):
            frame["model"] = event["model"]
        final_seq = event.get("seq")
        if final_seq is not None:
            frame["seq"] = final_seq
        # v2 leaves the text out when this socket already has all of it; v1
        # always sends it (the client replaces its text with it).
        if not (self.compact and final_seq is not None and followed == final_seq):
            frame["content"] = event["content"]
        await self.send_json(frame)
