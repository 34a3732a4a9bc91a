"""Calling the ORM from async code without one queue for every answer."""

from __future__ import annotations

import contextlib
import functools

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connections
from django.utils import timezone


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


# Rows per INSERT statement: far below every backend's limit on parameters.
INSERT_ROWS_MAX = 500


def rows_insert(objs: list) -> None:
    """Insert unsaved model instances of one model and set their primary keys,
    like `bulk_create`, in one multi-row INSERT ... RETURNING per 500 rows.

    The ORM's insert compiler runs a chain of calls for every field of every
    row (about 0.1 ms a row: a third of starting a hundred answers at once);
    here each value is converted once, by the field's own database converter,
    and `auto_now`/`auto_now_add` fields get one timestamp for the batch. Only
    for plain models: no multi-table inheritance, no signals, no expressions
    as values.
    """
    if not objs:
        return
    connection = connections["default"]
    meta = objs[0]._meta
    if not connection.features.can_return_rows_from_bulk_insert:  # e.g. SQLite before 3.35
        type(objs[0])._default_manager.bulk_create(objs)
        return
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    now = timezone.now()
    stamped = [field for field in fields if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)]
    for obj in objs:
        for field in stamped:
            setattr(obj, field.attname, now)
    stamp = {field.attname: field.get_db_prep_save(now, connection) for field in stamped}
    quote = connection.ops.quote_name
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) VALUES "
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    returning = f" RETURNING {quote(meta.pk.column)}"
    # A value a field's converter would hand on unchanged needs no call.
    converters = [
        (field.get_db_prep_save, field.attname)
        if field.attname not in stamp
        and field.get_internal_type() in ("DateTimeField", "DateField", "JSONField", "DecimalField", "UUIDField")
        else (None, field.attname)
        for field in fields
    ]
    with _insert_cursor(connection) as (cursor, numbered):
        for start in range(0, len(objs), INSERT_ROWS_MAX):
            chunk = objs[start : start + INSERT_ROWS_MAX]
            params = []
            for obj in chunk:
                for convert, attname in converters:
                    if attname in stamp:
                        params.append(stamp[attname])
                        continue
                    value = getattr(obj, attname)
                    params.append(convert(value, connection) if convert is not None else value)
            if numbered:
                width = len(fields)
                values = ", ".join(
                    "(" + ", ".join(f"${row * width + column}" for column in range(1, width + 1)) + ")"
                    for row in range(len(chunk))
                )
            else:
                values = ", ".join([row_sql] * len(chunk))
            cursor.execute(head + values + returning, params)
            for obj, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                obj.pk = pk
                obj._state.adding = False
                obj._state.db = connection.alias


@contextlib.contextmanager
def _insert_cursor(connection):
    """A cursor for `rows_insert`, and whether it takes $1-numbered placeholders.

    On PostgreSQL a raw psycopg cursor: the values travel apart from the SQL
    and psycopg reads nothing of the statement. Through Django's cursor,
    psycopg splits a statement at every %s in Python and caches the result
    only for short statements: the split of a hundred answers' rows at once
    took 7 % of two processes' time in a run of 200 answers, nearly all of it
    in the burst of their starts (docs/performance.md, sixth pass).
    Database errors are Django's, as from any cursor."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor, False
        return
    import psycopg  # only the PostgreSQL backend has it

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.RawCursor(connection.connection) as cursor:
        yield cursor, True
