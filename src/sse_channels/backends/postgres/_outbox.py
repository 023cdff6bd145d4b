"""Sending in the application's own transaction: ``send_in`` and ``send_in_async``.

The event is one row of the outbox, inserted on the caller's connection: it is committed,
and delivered, if and only if the caller's transaction commits, and rolled back with it.
The insert also rings the doorbell with ``pg_notify``, which PostgreSQL sends at commit.

The statement is a plain ``%s`` query, so it runs on anything with a DB-API-like
``cursor()``: a psycopg 3 ``Connection``, a Django ``connection`` (psycopg 2 or 3), and,
for ``send_in_async``, a psycopg 3 ``AsyncConnection``.

Imports ``sse_channels.Event`` and ``BackendError``, the package's ``_schema``, ``_rows``
and ``_ids``; no driver.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..._event import Event
from ..._exceptions import BackendError
from ._ids import event_id
from ._rows import columns
from ._schema import Sql

__all__ = ["AsyncConnectionLike", "ConnectionLike", "send_in", "send_in_async"]

_statements: dict[str, Sql] = {}


class ConnectionLike(Protocol):
    """Anything with a DB-API ``cursor()`` usable as a context manager (psycopg, Django)."""

    def cursor(self) -> Any: ...


class AsyncConnectionLike(Protocol):
    """A psycopg 3 ``AsyncConnection`` (its ``cursor()`` is an async context manager)."""

    def cursor(self) -> Any: ...


def _draft(
    channel: str,
    data: Any,
    event: str | None,
    id: str | None,
    retry: int | None,
    schema: str,
) -> tuple[Sql, Event, tuple[Any, ...]]:
    if type(channel) is not str or not channel or "*" in channel or not channel.isprintable():
        if type(channel) is not str:
            raise TypeError(f"channel must be str, not {type(channel).__name__}")
        raise ValueError(f"channel must be a non-empty printable name without '*': {channel!r}")
    sql = _statements.get(schema)
    if sql is None:
        sql = _statements[schema] = Sql(schema)  # checks the name
    draft = Event(data, event=event, id=id, retry=retry, channel=channel)
    return sql, draft, (channel, *columns(draft))


def _answer(draft: Event, row: Any, schema: str) -> Event:
    if row is None:
        raise BackendError(
            f"the schema {schema!r} has no epoch row: start a PostgresBackend on it once, "
            "or run schema_sql()"
        )
    txid, row_id, label = row
    if draft.id is not None:
        return draft
    return draft.with_id(event_id(str(label), int(txid), int(row_id)))


def send_in(
    connection: ConnectionLike,
    channel: str,
    data: Any,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    schema: str = "sse",
) -> Event:
    """Write an event in the transaction that ``connection`` holds.

    The event is delivered, to the subscribers of every process whose
    [PostgresBackend][sse_channels.backends.postgres.PostgresBackend] uses ``schema`` on
    this database, if and only if the transaction commits::

        with transaction.atomic():            # Django; or `with conn.transaction():`
            order.save()
            send_in(connection, f"orders:{order.customer_id}", {"id": order.id})

    Outside a transaction (autocommit) the event is committed at once.

    Args:
        connection: a psycopg 3 ``Connection`` or a Django ``connection``.
        channel: the channel (no ``*``), as for ``ChannelStore.send``.
        data: the payload (``str``, or serialised to JSON), as for ``ChannelStore.send``.
        event: the event type, or ``None``.
        id: an id of your own, or ``None`` for the backend's (``"<epoch>-<txid>.<id>"``).
        retry: the reconnection delay in milliseconds, or ``None``.
        schema: the backend's schema.

    Returns:
        The event with its id (already valid, but delivered only after the commit).

    Raises:
        ValueError, TypeError: bad input; nothing was written.
        BackendError: the schema has no epoch row (the tables were never set up).
        The driver's errors (``psycopg.Error``, Django's ``DatabaseError``): the insert
            failed, and the caller's transaction with it.
    """
    sql, draft, params = _draft(channel, data, event, id, retry, schema)
    with connection.cursor() as cursor:
        cursor.execute(sql.insert_one, params)
        row = cursor.fetchone()
    return _answer(draft, row, schema)


async def send_in_async(
    connection: AsyncConnectionLike,
    channel: str,
    data: Any,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    schema: str = "sse",
) -> Event:
    """``send_in`` on a psycopg 3 ``AsyncConnection``: the event commits with its transaction.

    ::

        async with aconn.transaction():
            await aconn.execute("UPDATE users SET online = true WHERE id = %s", (user,))
            await send_in_async(aconn, f"friends:{user}", {"online": user})

    Raises:
        ValueError, TypeError: bad input; nothing was written.
        BackendError: the schema has no epoch row (the tables were never set up).
        psycopg.Error: the insert failed, and the caller's transaction with it.

    Cancelling it leaves the connection as psycopg leaves a cancelled statement; the
    caller's transaction should then be rolled back.
    """
    sql, draft, params = _draft(channel, data, event, id, retry, schema)
    async with connection.cursor() as cursor:
        await cursor.execute(sql.insert_one, params)
        row = await cursor.fetchone()
    return _answer(draft, row, schema)
