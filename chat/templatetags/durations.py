"""{{ some_timedelta|duration_words }}: "15 minutes", "1 hour, 30 minutes" in the page's language."""

from datetime import UTC, datetime, timedelta

from django import template
from django.utils.timesince import timesince

register = template.Library()

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@register.filter
def duration_words(value) -> str:
    """A timedelta in words, to two units (Django's timesince wording, translated)."""
    if not isinstance(value, timedelta):
        return ""
    # timesince counts whole minutes: anything shorter reads "0 minutes", so round up.
    minutes = max(1, -(-int(value.total_seconds()) // 60))
    return timesince(_EPOCH, _EPOCH + timedelta(minutes=minutes))
