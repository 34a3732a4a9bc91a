"""The chat websocket: who is this, what do they ask, is it theirs.

The protocol is documented in docs/websocket-protocol.md. Answers are written by
chat.generation, not here: this consumer only starts, stops and watches them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import replace
from urllib.parse import parse_qs

from autobahn.exception import Disconnected
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.sessions import InstanceSessionWrapper
from django.conf import settings

from chat import events
from chat.delivery import encode
from chat.follow import Follower
from chat.generation import get_manager
from chat.models import MODEL_ID_MAX, Conversation, Message
from chat.providers.registry import model_is_offered
from chat.selectors import NotFound, aconversation_get, amessage_get, amessage_list
from chat.serializers import conversation_data, message_data
from chat.services.answer_batch import NewChat, new_chat_queue
from chat.services.answers import NEWEST, Busy, NotAnAnswer, answer_begin, answer_regenerate
from chat.services.limits import Allowance, LimitExceeded, allowance_get
from chat.signouts import CLOSE_SIGNED_OUT, session_digest, session_user_id
from chat.transport import text_frame_writer

logger = logging.getLogger(__name__)

# A new chat's upstream request goes out before the database has checked the
# user's limits only while they are far from every limit (as last read): a
# refused frame must never reach the upstream. The margins cover another tab
# of the same user starting answers meanwhile.
EARLY_MIN_STARTS = 2
EARLY_MIN_CHARS = 20_000


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


def _frame_send(send):
    """The server's own send, under channels' session middleware: that wrapper
    acts only on HTTP responses, yet reads the lazy session on every message,
    which is a tenth of the cost of a streamed frame (docs/performance.md)."""
    wrapper = getattr(send, "__self__", None)
    while isinstance(wrapper, InstanceSessionWrapper):
        send = wrapper.real_send
        wrapper = getattr(send, "__self__", None)
    return send


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One browser tab. Created per socket; `connect` runs at the handshake.

    The consumer decodes frames and calls services; the frames of answers
    reach it from the process's Hub (chat.delivery), which calls `send_frames`.
    It has no channel-layer channel of its own: the hub receives for all.
    """

    channel_layer_alias = None
    # The frame limit (also daphne's, see the serve command): the longest
    # allowed message, fully JSON-escaped, plus room for the JSON around it.
    max_frame_chars = settings.CHAT_WS_MAX_MESSAGE_CHARS
    user_id: int | None = None

    @classmethod
    async def encode_json(cls, content) -> str:
        return encode(content).decode()

    async def dispatch(self, message) -> None:
        """channels closes stale database connections before every message, by
        a trip through the database thread: a frame would first wait there
        behind whatever that thread is writing (a batch of a hundred starts)
        before its answer's upstream request could go out. Frames skip it; the
        answers' manager does the same check once a second for that thread,
        and connect and disconnect keep it."""
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
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
        self.follower = Follower(compact=query.get("v") == ["2"])
        self.out: list = []  # frames queued by the hub
        self.queued = False  # in the hub's list of sockets to send to
        self.paused = False  # frames wait (behind a history being read)
        self.frame_send = _frame_send(self.base_send)
        self.write_frames = text_frame_writer(self.frame_send)
        self.manager = get_manager()
        self.hub = self.manager.hub
        await self.manager.ensure_started()
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        self.session_checks: set[asyncio.Task] = set()
        self.allowance = await allowance_get(user=user)
        await self.hub.socket_add(self)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.user_id is not None:
            await self.hub.socket_remove(self)
            self.out.clear()
            for task in self.session_checks:
                task.cancel()

    def session_event(self, event: dict) -> None:
        """A session of this user ended, or the account changed (chat/signouts.py)."""
        task = asyncio.create_task(self._session_check(event["ended"]))
        self.session_checks.add(task)
        task.add_done_callback(self.session_checks.discard)

    async def _session_check(self, ended: str | None) -> None:
        if ended != session_digest(self.session_key) and await session_user_id(self.session_key) == self.user_id:
            return
        logger.info("closing a websocket of user %s: its session ended", self.user_id)
        await self.close(code=CLOSE_SIGNED_OUT)

    async def send_frames(self, frames: list) -> None:
        """Send the frames the hub made for this socket in one loop tick
        (chat.follow: dicts, or v2 bare deltas): written at once when daphne's
        connection is plainly open (chat/transport.py), else through daphne."""
        payloads = [encode(frame) for frame in frames]
        if self.write_frames is not None and self.write_frames(payloads):
            return
        try:
            for payload in payloads:
                await self.frame_send({"type": "websocket.send", "text": payload.decode()})
        except Disconnected:
            # The browser went away between the hub queuing these and now:
            # nobody is left to read them, and `disconnect` follows.
            return

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
        # A new chat's history is its one message: the upstream is asked now,
        # while the database saves the rows (the answer waits for them).
        early = None
        guess = [{"role": "user", "content": text}]
        allowance = self.allowance
        if (
            conversation_id is None
            and allowance.current()
            and allowance.starts >= EARLY_MIN_STARTS
            and allowance.chars >= EARLY_MIN_CHARS
            and len(text) <= allowance.message_chars
        ):
            early = self.manager.prefetch(history=guess, model=model)
        self.allowance = replace(allowance, starts=allowance.starts - 1)
        try:
            # Every check and write in one trip to the database: a refused frame
            # leaves no trace (not even an empty conversation). New chats that
            # arrive together are written together.
            if conversation_id is None:
                begun = await new_chat_queue().submit(NewChat(user=self.user, content=text, model=model))
            else:
                begun = await answer_begin(
                    user=self.user, conversation_id=conversation_id, content=text,
                    parent_id=parent_id, model=model,
                )
        except BaseException as exc:
            if early is not None:
                await early.aclose()
            if isinstance(exc, LimitExceeded):
                self.allowance = Allowance(starts=0, chars=0)  # until a start succeeds again
                raise ClientError(exc.code, exc.detail) from None
            if isinstance(exc, Busy):
                raise _busy() from None
            raise
        self.allowance = begun.allowance
        if early is not None and (begun.history != guess or begun.assistant.model != model):
            # The new chat has more than its message (the account's custom
            # instructions as its system prompt, or its default model).
            await early.aclose()
            early = None
        conversation = begun.conversation
        self.hub.watch(self, conversation.pk)
        if begun.created:
            self.hub.publish(
                events.conversation(data=conversation_data(conversation), user=self.user_id),
                user=self.user_id,
            )
        self.hub.publish(
            events.message(data=message_data(begun.user_message)),
            user=self.user_id,
            ref_socket=self,
            ref=ref,
        )
        await self.start_answer(conversation, begun.assistant, history=begun.history, upstream=early)

    async def command_stop(self, content: dict, ref: str | None) -> None:
        message = await amessage_get(user=self.user, message_id=_id_field(content, "message"))
        if message.role != Message.Role.ASSISTANT or message.status not in events.ACTIVE:
            raise ClientError("not_streaming", "That answer is not being written any more.")
        await self.manager.request_stop(message_id=message.pk)

    async def command_regenerate(self, content: dict, ref: str | None) -> None:
        message_id = _id_field(content, "message")
        model = await _model_field(content)
        try:
            begun = await answer_regenerate(user=self.user, message_id=message_id, model=model)
        except LimitExceeded as exc:
            raise ClientError(exc.code, exc.detail) from None
        except NotAnAnswer:
            raise ClientError("bad_field", "Only an answer can be regenerated.") from None
        except Busy:
            raise _busy() from None
        self.allowance = begun.allowance
        self.hub.watch(self, begun.conversation.pk)
        await self.start_answer(begun.conversation, begun.assistant, history=begun.history)

    async def command_open(self, content: dict, ref: str | None) -> None:
        conversation = await aconversation_get(
            user=self.user, conversation_id=_id_field(content, "conversation")
        )
        # Watched first, read the rows second: whatever finishes after this
        # read arrives as an event (other processes' through the user's group,
        # joined when the socket opened), so nothing falls between the two.
        # Frames of those events wait until the history is sent.
        self.paused = True
        try:
            self.hub.watch(self, conversation.pk)
            messages = await amessage_list(conversation=conversation)
            await self.send_json(
                {
                    "type": "history",
                    "conversation": conversation_data(conversation),
                    "messages": [message_data(m) for m in messages],
                }
            )
            for message in messages:
                if (
                    message.role == Message.Role.ASSISTANT
                    and message.status in events.ACTIVE
                    and message.pk not in self.follower.streams
                ):
                    self.hub.join_answer(self, message.pk)
        finally:
            self.hub.release(self)

    # ---- helpers -------------------------------------------------------------

    async def start_answer(
        self, conversation: Conversation, assistant: Message, *, history: list[dict], upstream=None
    ) -> None:
        await self.manager.start(
            message_id=assistant.pk,
            conversation_id=conversation.pk,
            history=history,
            model=assistant.model,
            owner_id=self.user_id,
            upstream=upstream,
            placeholder=message_data(assistant),
        )


def _busy() -> ClientError:
    return ClientError("busy", "An answer is still being written in this conversation: stop it or wait.")
