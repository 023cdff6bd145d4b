"""The backend's own sends: concurrent sends batched into one statement, and retried safely.

A send that finds nothing in flight writes its own statement at once. Sends that come
while a statement is under way queue; a writer task then stores everything queued with
one multi-row ``INSERT`` that also rings the doorbell (``pg_notify``), in autocommit: one
round trip and one commit for the whole batch, which is what makes concurrent sends
cheap (a commit, and its ``NOTIFY``, cost more than the rows). While one batch is in
flight the next one gathers. Without a task group (a store used without ``async with``)
each send writes its own statement.

Every batch carries a random token. When a statement's connection fails, the batch may or
may not have been stored; before trying again the sender looks for the token's rows
(after a position known to precede the batch) and, if it finds them, answers with those:
a retry never stores a batch twice when the first attempt's transaction has ended (as it
has after the server closed the connection). Sends are retried with backoff for up to
``retry_for`` seconds, across a restart of the server.

A single send runs a prepared statement through ``_prepared`` (psycopg's lower-level
API); batches go through a psycopg cursor.

Imports psycopg, anyio, the package's ``BackendError`` and the package's ``_schema``,
``_link``, ``_health``, ``_prepared``.
"""

from __future__ import annotations

import random
import secrets
import time
from typing import TYPE_CHECKING, Any, final

import anyio
import psycopg

from ..._exceptions import BackendError
from ._health import Health, describe
from ._link import LinkClosedError
from ._prepared import Prepared

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._link import Link
    from ._schema import Sql

__all__ = [
    "BATCH_LIMIT",
    "Pending",
    "Sender",
    "Stored",
    "answers",
    "backoff",
    "batch_params",
    "encoded",
]

#: Most events in one statement (a batch also stops at ``_BATCH_BYTES`` of data).
BATCH_LIMIT = 1000
_BATCH_BYTES = 4 << 20

#: ``(label, txid, id)`` of a stored event.
Stored = tuple[str, int, int]
#: ``(channel, data, event, retry, event_id)``: one event's columns.
Columns = tuple[str, bytes, "str | None", "int | None", "str | None"]
#: Which parameters of ``Sql.insert_prepared`` are ``bytea`` (sent as binary).
_BINARY_COLUMNS = (False, True, False, False, False, False)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (spreads many reconnecting processes out)."""
    return random.uniform(base / 2, min(cap, base * 2**attempt))


def batch_params(token: str, rows: list[Columns]) -> tuple[Any, ...]:
    """The parameters of ``Sql.insert_many`` for ``rows``."""
    return (
        token,
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
        [row[3] for row in rows],
        [row[4] for row in rows],
    )


def encoded(row: Columns) -> tuple[bytes | None, ...]:
    """One event's columns as the parameters of ``Sql.insert_prepared`` (token aside)."""
    channel, data, event, retry, event_id = row
    return (
        channel.encode(),
        data,
        None if event is None else event.encode(),
        None if retry is None else str(retry).encode(),
        None if event_id is None else event_id.encode(),
    )


def answers(found: list[Any], label: str | None = None) -> list[Stored]:
    """``(label, txid, id)`` of each row an insert (or a token lookup) answered.

    Values may be text ``bytes`` (``_prepared``) or Python values (psycopg's cursors).
    """
    return [
        (label if label is not None else _text(row[2]), int(row[0]), int(row[1])) for row in found
    ]


def _text(value: Any) -> str:
    return value.decode() if type(value) is bytes else str(value)


@final
class Pending:
    """One queued send and, once written, its outcome."""

    __slots__ = ("columns", "done", "error", "stored")

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self.done = anyio.Event()
        self.stored: Stored | None = None
        self.error: BaseException | None = None


@final
class Sender:
    """Writes the backend's sends (see the module docstring).

    Args:
        link: the connection to write on.
        sql: the statements.
        health: where failures are recorded.
        after: the newest position known to precede anything sent now (for lookups).
        retry_for: seconds a send keeps retrying after connection failures.
    """

    def __init__(
        self,
        link: Link,
        sql: Sql,
        health: Health,
        after: Callable[[], tuple[int, int]],
        retry_for: float,
    ) -> None:
        self._link, self._sql, self._health = link, sql, health
        self._after = after
        self._retry_for = retry_for
        self._queue: list[Pending] = []
        self._wake: anyio.Event | None = None
        #: A statement is under way (a direct send's, or the writer task's).
        self._busy = False
        self._cursor: psycopg.AsyncCursor[Any] | None = None
        self._single = Prepared("sse_channels_send", sql.insert_prepared, _BINARY_COLUMNS)

    async def send(self, columns: Columns) -> Stored:
        """Store one event; its ``(label, txid, id)``.

        Raises:
            BackendError: it could not be stored within ``retry_for`` seconds, or
                PostgreSQL refused it.

        Cancelling it may or may not have stored the event.
        """
        if self._wake is None or not (self._busy or self._queue):
            # Nothing in flight (or no writer task): write it now, alone. Sends that come
            # while it is under way queue for the writer task, which batches them.
            self._busy = True
            try:
                (stored,) = await self._write([columns])
            finally:
                self._busy = False
                if self._queue and self._wake is not None:
                    self._wake.set()
            return stored
        item = Pending(columns)
        self._queue.append(item)
        if not self._busy:
            self._wake.set()
        await item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.stored is not None
        return item.stored

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The writer task: batch what is queued, one statement at a time, until cancelled."""
        self._wake = anyio.Event()
        task_status.started()
        batch: list[Pending] = []
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._queue and not self._busy:
                    batch = self._take()
                    self._busy = True
                    try:
                        stored = await self._write([item.columns for item in batch])
                    except BackendError as exc:
                        for item in batch:
                            item.error = exc
                            item.done.set()
                        continue
                    finally:
                        self._busy = False
                    for item, answer in zip(batch, stored, strict=True):
                        item.stored = answer
                        item.done.set()
        finally:
            self._wake = None
            # The batch in flight when the backend closed may or may not have been stored;
            # what was still queued was not. Nobody is left waiting either way.
            unsure = BackendError(
                "the PostgreSQL backend was closed while the event was being sent; "
                "it may or may not have been stored"
            )
            closed = BackendError("the PostgreSQL backend was closed before the event was sent")
            for item in batch:
                if not item.done.is_set():
                    item.error = unsure
                    item.done.set()
            for item in self._queue:
                item.error = closed
                item.done.set()
            self._queue = []

    def _take(self) -> list[Pending]:
        size = 0
        for index, item in enumerate(self._queue):
            size += len(item.columns[1])
            if index + 1 >= BATCH_LIMIT or size >= _BATCH_BYTES:
                batch, self._queue = self._queue[: index + 1], self._queue[index + 1 :]
                return batch
        batch, self._queue = self._queue, []
        return batch

    async def _write(self, rows: list[Columns]) -> list[Stored]:
        token = secrets.token_hex(8)
        sql = self._sql
        insert: Callable[[psycopg.AsyncConnection[Any]], Awaitable[list[Any]]]
        if len(rows) == 1:
            # Most sends: one row, through the prepared statement's lower-level path
            # (psycopg's cursor would cost the sending process more CPU than PostgreSQL
            # spends on the statement).
            single = (*encoded(rows[0]), token.encode())
            prepared = self._single

            def insert(connection: psycopg.AsyncConnection[Any]) -> Awaitable[list[Any]]:
                return prepared.run(connection, single)

        else:
            params = batch_params(token, rows)

            async def insert(connection: psycopg.AsyncConnection[Any]) -> list[Any]:
                cursor = self._cursor
                if cursor is None or cursor.connection is not connection:
                    # One cursor per connection, reused: a cursor costs more to make
                    # than a small statement costs to send.
                    cursor = self._cursor = connection.cursor()
                await cursor.execute(sql.insert_many, params, prepare=True)
                return await cursor.fetchall()

        after = self._after()
        deadline = time.monotonic() + self._retry_for
        attempt = 0

        async def lookup(connection: psycopg.AsyncConnection[Any]) -> list[Any]:
            cursor = await connection.execute(sql.find_token, (str(after[0]), after[1], token))
            return await cursor.fetchall()

        while True:
            try:
                if attempt:
                    found = await self._link.run(lookup)
                    if found:
                        label = await self._link.run(self._label)
                        return answers(found, label)
                reply = await self._link.run(insert)
                if len(reply) != len(rows):
                    raise BackendError(
                        f"the events table answered {len(reply)} rows for {len(rows)} events; "
                        "is the schema set up (schema_sql())?"
                    )
                return answers(reply)
            except (psycopg.OperationalError, TimeoutError, OSError) as exc:
                self._health.last_error = describe(exc)
                attempt += 1
                wait = backoff(attempt, 0.05, 1.0)
                if time.monotonic() + wait > deadline:
                    raise BackendError(f"could not send to PostgreSQL: {exc}") from exc
                await anyio.sleep(wait)
            except LinkClosedError as exc:
                raise BackendError("the PostgreSQL backend is closed") from exc
            except psycopg.Error as exc:
                self._health.last_error = describe(exc)
                raise BackendError(f"PostgreSQL refused the event: {exc}") from exc

    async def _label(self, connection: psycopg.AsyncConnection[Any]) -> str:
        cursor = await connection.execute(
            f"SELECT value FROM {self._sql.schema}.meta WHERE name = 'epoch'"
        )
        row = await cursor.fetchone()
        if row is None:
            raise BackendError("the schema has no epoch row (was meta emptied?)")
        return str(row[0])
