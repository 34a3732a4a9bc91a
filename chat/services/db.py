"""Calling the ORM from async code without one queue for every answer."""

from __future__ import annotations

import functools

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connections


def concurrent_on_postgres(func):
    """Make a sync ORM function awaitable.

    On SQLite it runs in the one database thread (one writer at a time, and
    its connection is kept there). On PostgreSQL it runs in a pool thread with
    a pooled connection of its own (given back to the pool after the call),
    so that a hundred answers starting at once
    are written side by side instead of one after another.
    """
    one_thread = sync_to_async(func)
    pool_thread = database_sync_to_async(func, thread_sensitive=False)

    @functools.wraps(func)
    async def call(*args, **kwargs):
        if connections["default"].vendor == "sqlite":
            return await one_thread(*args, **kwargs)
        return await pool_thread(*args, **kwargs)

    call.func = func
    return call
