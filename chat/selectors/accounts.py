"""A person's account settings: their defaults for new chats."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from chat.models import AccountSettings


def account_settings_get(*, user: AbstractBaseUser) -> AccountSettings:
    """The user's settings; an unsaved row with empty defaults when they never saved any."""
    return AccountSettings.objects.filter(user=user).first() or AccountSettings(user=user)
