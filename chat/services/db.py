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
    of `fields` and then the primary key (each key once). `where` adds a
    condition (SQL with %s placeholders, `where_params`).

    The ORM would build and compile an UPDATE per row (the cost of saving a
    hundred answers at once). On PostgreSQL this is one statement per 500
    rows, the values joined in as a table, through a raw cursor (see
    `_raw_cursor`): a statement per row, even in psycopg's pipeline, gives up
    and takes back the GIL at every row, and while the event loop is busy
    each time back can wait the interpreter's switch interval: a hundred
    answers' final saves, beside a busy thread, took 100-180 ms that way and
    30-60 ms in one statement.
    Elsewhere one statement prepared once and run for every row by the driver.
    """
    if not rows:
        return
    connection = connections["default"]
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    converters = _converters(columns)
    with _raw_cursor(connection) as (cursor, numbered):
        if not numbered:
            assignments = ", ".join(f"{quote(column.column)} = %s" for column in columns)
            sql = f"UPDATE {table} SET {assignments} WHERE {pk} = %s"
            if where:
                sql += f" AND ({where})"
            params = [_prepared(row[:-1], converters, connection) + [row[-1], *where_params] for row in rows]
            cursor.executemany(sql, params)
            return
        width = len(columns) + 1
        # The values' types come from the table: a typed empty row heads them.
        typed = ", ".join(f"{quote(column.column)} AS c{i}" for i, column in enumerate(columns))
        assignments = ", ".join(f"{quote(column.column)} = v.c{i}" for i, column in enumerate(columns))
        for start in range(0, len(rows), ROWS_MAX):
            chunk = rows[start : start + ROWS_MAX]
            sql = (
                f"UPDATE {table} SET {assignments} FROM (SELECT {typed}, {pk} AS pk FROM {table} WHERE false "
                f"UNION ALL VALUES {_numbered_rows(len(chunk), width)}) AS v WHERE {table}.{pk} = v.pk"
            )
            params = []
            for row in chunk:
                params += _prepared(row[:-1], converters, connection)
                params.append(row[-1])
            if where:
                sql += f" AND ({_numbered(where, first=len(params) + 1)})"
                params += where_params
            cursor.execute(sql, params)


def _numbered_rows(rows: int, width: int) -> str:
    """`($1, $2), ($3, $4)` for 2 rows of width 2: the placeholders of a VALUES list."""
    return ", ".join(
        "(" + ", ".join(f"${row * width + column}" for column in range(1, width + 1)) + ")" for row in range(rows)
    )


def _numbered(sql: str, *, first: int) -> str:
    """`sql` with its %s placeholders numbered $first, $first+1, ..."""
    head, *rest = sql.split("%s")
    return head + "".join(f"${first + i}{part}" for i, part in enumerate(rest))


def _converters(fields) -> list:
    """Each field's conversion of a value for the database, or None where the
    driver takes the Python value as it is (text, numbers, booleans)."""
    return [
        field.get_db_prep_save
        if field.get_internal_type() in ("DateTimeField", "DateField", "JSONField", "DecimalField", "UUIDField")
        else None
        for field in fields
    ]


def _prepared(values, converters, connection) -> list:
    return [
        convert(value, connection) if convert is not None else value
        for convert, value in zip(converters, values, strict=True)
    ]


# Rows per INSERT or UPDATE statement: far below every backend's limit on parameters.
ROWS_MAX = 500


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
        (None if field.attname in stamp else convert, field.attname)
        for field, convert in zip(fields, _converters(fields), strict=True)
    ]
    with _raw_cursor(connection) as (cursor, numbered):
        for start in range(0, len(objs), ROWS_MAX):
            chunk = objs[start : start + ROWS_MAX]
            params = []
            for obj in chunk:
                for convert, attname in converters:
                    if attname in stamp:
                        params.append(stamp[attname])
                        continue
                    value = getattr(obj, attname)
                    params.append(convert(value, connection) if convert is not None else value)
            values = _numbered_rows(len(chunk), len(fields)) if numbered else ", ".join([row_sql] * len(chunk))
            cursor.execute(head + values + returning, params)
            for obj, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                obj.pk = pk
                obj._state.adding = False
                obj._state.db = connection.alias


@contextlib.contextmanager
def _raw_cursor(connection):
    """A cursor for `rows_insert` and `rows_update`, and whether it takes
    $1-numbered placeholders.

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
