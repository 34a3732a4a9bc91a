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


def rows_update(
    *, model, fields: list[str], rows: list[tuple], where: str = "", where_params: tuple = ()
) -> None:
    """Update many rows of `model` with the same columns: each row is the values
    of `fields` and then the primary key. One statement prepared once and run
    for every row by the database driver, where the ORM would build and compile
    an UPDATE per row (the cost of saving a hundred answers at once).
    `where` adds a condition (SQL with %s placeholders, `where_params`)."""
    if not rows:
        return
    connection = connections["default"]
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(column.column)} = %s" for column in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
    if where:
        sql += f" AND ({where})"
    params = [
        [column.get_db_prep_value(value, connection) for column, value in zip(columns, row[:-1], strict=True)]
        + [row[-1], *where_params]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
