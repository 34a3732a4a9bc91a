"""Per-user limits: checked before anything is saved or sent upstream.

Defaults come from settings (CHAT_*); staff override them per group or per user
in the admin (chat.models.UsageLimit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import Length
from django.utils import timezone

from chat.events import ACTIVE
from chat.models import Message, UsageLimit

FIELDS = ("messages_per_minute", "concurrent_answers", "max_message_chars", "daily_answer_chars")


class LimitExceeded(Exception):
    """A limit stops this request; `code` and `detail` become the error frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    messages_per_minute: int
    concurrent_answers: int
    max_message_chars: int
    daily_answer_chars: int


def _defaults() -> dict[str, int]:
    return {
        "messages_per_minute": settings.CHAT_MESSAGES_PER_MINUTE,
        "concurrent_answers": settings.CHAT_CONCURRENT_ANSWERS,
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "daily_answer_chars": settings.CHAT_DAILY_ANSWER_CHARS,
    }


def user_limits(*, user) -> Limits:
    """The user's limits: their own row, else the most generous of their groups', else defaults."""
    rows = list(UsageLimit.objects.filter(Q(user=user) | Q(group__user=user)).distinct())
    own = next((row for row in rows if row.user_id == user.pk), None)
    return _resolve(own=own, groups=[row for row in rows if row.group_id is not None])


def users_limits(*, user_ids: list[int]) -> dict[int, Limits]:
    """user_limits of many users in two queries (the admin's usage page)."""
    from django.contrib.auth import get_user_model

    memberships = list(
        get_user_model().groups.through.objects.filter(user_id__in=user_ids).values_list("user_id", "group_id")
    )
    group_ids = {group_id for _, group_id in memberships}
    rows = list(UsageLimit.objects.filter(Q(user_id__in=user_ids) | Q(group_id__in=group_ids)))
    own = {row.user_id: row for row in rows if row.user_id is not None}
    by_group = {row.group_id: row for row in rows if row.group_id is not None}
    groups: dict[int, list[UsageLimit]] = {}
    for user_id, group_id in memberships:
        if group_id in by_group:
            groups.setdefault(user_id, []).append(by_group[group_id])
    return {uid: _resolve(own=own.get(uid), groups=groups.get(uid, [])) for uid in user_ids}


def _resolve(*, own: UsageLimit | None, groups: list[UsageLimit]) -> Limits:
    values = _defaults()
    for name in FIELDS:
        if own is not None and getattr(own, name) is not None:
            values[name] = getattr(own, name)
            continue
        granted = [getattr(row, name) for row in groups if getattr(row, name) is not None]
        if granted:
            values[name] = max(granted)
    # A message can never be longer than the socket accepts.
    values["max_message_chars"] = min(values["max_message_chars"], settings.CHAT_MAX_MESSAGE_CHARS)
    return Limits(**values)


@dataclass(frozen=True)
class Allowance:
    """What the user may still do before a limit refuses them, as of one read."""

    starts: int  # answers they may start now
    chars: int  # characters of answers left today
    message_chars: int = 0  # the longest message they may send
    version: int = -1  # the limits it was read under (see limits_changed)

    def current(self) -> bool:
        """False once a limit was changed in this process since it was read."""
        return self.version == _limits_version


# Bumped whenever limits change in this process (a UsageLimit row, a group
# membership, the settings): allowances read before are no longer trusted.
_limits_version = 0


def limits_changed(**_kwargs) -> None:
    global _limits_version
    _limits_version += 1


@dataclass
class Usage:
    """A user's answers as the limits count them: in the last minute, being
    written now, and characters today."""

    recent: int = 0
    active: int = 0
    chars: int = 0


def users_usage(*, user_ids: list[int]) -> dict[int, Usage]:
    """The usage of several users in one query (grouped by owner)."""
    now = timezone.now()
    minute_ago = now - timedelta(seconds=60)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        Message.objects.filter(
            Q(created_at__gte=min(minute_ago, day_start)) | Q(status__in=ACTIVE),
            conversation__owner_id__in=user_ids,
            role=Message.Role.ASSISTANT,
        )
        .values("conversation__owner_id")
        .annotate(
            recent=Count("id", filter=Q(created_at__gte=minute_ago)),
            active=Count("id", filter=Q(status__in=ACTIVE)),
            chars=Sum(Length("content"), filter=Q(created_at__gte=day_start)),
        )
    )
    usage = {user_id: Usage() for user_id in user_ids}
    for row in rows:
        usage[row["conversation__owner_id"]] = Usage(row["recent"], row["active"], row["chars"] or 0)
    return usage


def allowance_check(*, limits: Limits, usage: Usage, message_chars: int = 0) -> Allowance:
    """Raise LimitExceeded if a user with these limits and this usage may not
    start another answer now; else return their allowance before this start."""
    if message_chars > limits.max_message_chars:
        raise LimitExceeded(
            "too_long", f"The message is too long: at most {limits.max_message_chars} characters."
        )
    if usage.active >= limits.concurrent_answers:
        raise LimitExceeded(
            "too_many_answers",
            f"You already have {usage.active} answer(s) being written "
            f"(at most {limits.concurrent_answers} at once). Wait for one to finish or stop it.",
        )
    if usage.recent >= limits.messages_per_minute:
        raise LimitExceeded(
            "rate_limited",
            f"You are sending messages too fast: at most {limits.messages_per_minute} a minute. "
            "Wait a moment and try again.",
        )
    chars_left = limits.daily_answer_chars - usage.chars
    if chars_left <= 0:
        raise LimitExceeded(
            "quota_exceeded",
            f"You have used today's quota of {limits.daily_answer_chars} answer characters. "
            "It renews at midnight UTC.",
        )
    starts = min(limits.concurrent_answers - usage.active, limits.messages_per_minute - usage.recent)
    return Allowance(
        starts=starts, chars=chars_left, message_chars=limits.max_message_chars, version=_limits_version
    )


def user_limits_check(*, user, message_chars: int = 0) -> Allowance:
    """Raise LimitExceeded if the user may not start another answer now; else
    return their allowance before this start."""
    limits = user_limits(user=user)
    if message_chars > limits.max_message_chars:  # refused before any count
        return allowance_check(limits=limits, usage=Usage(), message_chars=message_chars)
    usage = users_usage(user_ids=[user.pk])[user.pk]
    return allowance_check(limits=limits, usage=usage, message_chars=message_chars)


def user_allowance(*, user) -> Allowance:
    """The user's allowance now; nothing left when a limit would refuse a start."""
    try:
        return user_limits_check(user=user)
    except LimitExceeded:
        return Allowance(starts=0, chars=0)


async def limits_for(*, user) -> Limits:
    return await sync_to_async(user_limits)(user=user)


async def limits_check(*, user, message_chars: int = 0) -> None:
    await sync_to_async(user_limits_check)(user=user, message_chars=message_chars)


async def allowance_get(*, user) -> Allowance:
    return await sync_to_async(user_allowance)(user=user)
