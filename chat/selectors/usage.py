"""Reads for the admin's usage page: answers counted per user, per day and per model.

Days are UTC days, as the daily quota (chat.services.limits) counts them. An
answer counts on the day it was started.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, Length, TruncDate

from chat.models import Message
from chat.services.limits import users_limits

# Answers before usage was recorded have no answer_chars: their text is counted.
SUMS = {
    "answers": Count("id"),
    "prompt_chars": Coalesce(Sum("prompt_chars"), 0),
    "answer_chars": Coalesce(Sum(Coalesce("answer_chars", Length("content"))), 0),
    "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
    "answer_tokens": Coalesce(Sum("answer_tokens"), 0),
    "estimated": Count("id", filter=Q(tokens_estimated=True)),
}


@dataclass(frozen=True)
class UsageRange:
    """From `start` to `end`, both included; optionally one user only."""

    start: dt.date
    end: dt.date
    user_id: int | None = None

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=n) for n in range((self.end - self.start).days + 1)]


def _answers(*, span: UsageRange) -> QuerySet[Message]:
    start = dt.datetime.combine(span.start, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(span.end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    answers = Message.objects.filter(role=Message.Role.ASSISTANT, created_at__gte=start, created_at__lt=end)
    if span.user_id is not None:
        answers = answers.filter(conversation__owner_id=span.user_id)
    return answers


def usage_by_user(*, span: UsageRange) -> list[dict]:
    """One row per user with answers in the range, the most used first, each with
    today's quota use (answer characters since midnight UTC) against their limit."""
    rows = list(
        _answers(span=span)
        .values("conversation__owner_id", "conversation__owner__username")
        .annotate(**SUMS)
        .order_by("-answer_chars", "conversation__owner__username")
    )
    user_ids = [row["conversation__owner_id"] for row in rows]
    limits = users_limits(user_ids=user_ids)
    today = _today_chars(user_ids=user_ids)
    for row in rows:
        row["user_id"] = row.pop("conversation__owner_id")
        row["username"] = row.pop("conversation__owner__username")
        limit = row["quota_limit"] = limits[row["user_id"]].daily_answer_chars
        used = row["quota_used"] = today.get(row["user_id"], 0)
        row["quota_percent"] = min(100, round(100 * used / limit)) if limit else 100
    return rows


def _today_chars(*, user_ids: list[int]) -> dict[int, int]:
    """What the daily quota counts (the same sum as chat.services.limits), per user."""
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        Message.objects.filter(
            role=Message.Role.ASSISTANT, created_at__gte=midnight, conversation__owner_id__in=user_ids
        )
        .values("conversation__owner_id")
        .annotate(chars=Sum(Length("content")))
    )
    return {row["conversation__owner_id"]: row["chars"] or 0 for row in rows}


def usage_by_day(*, span: UsageRange) -> list[dict]:
    """One row per day of the range, days without answers included (zeros)."""
    found = {
        row["day"]: row
        for row in _answers(span=span)
        .annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("day")
        .annotate(**SUMS)
        .order_by("day")
    }
    empty = dict.fromkeys(SUMS, 0)
    return [found.get(day, {**empty, "day": day}) for day in span.days]


def usage_by_model(*, span: UsageRange) -> list[dict]:
    return list(
        _answers(span=span).values("provider", "model").annotate(**SUMS).order_by("-answers", "provider", "model")
    )


def usage_detail(*, span: UsageRange) -> list[dict]:
    """Per day, user, provider and model: the rows of the CSV download."""
    return list(
        _answers(span=span)
        .annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("day", "conversation__owner__username", "provider", "model")
        .annotate(**SUMS)
        .order_by("day", "conversation__owner__username", "provider", "model")
    )
