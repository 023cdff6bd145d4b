"""One server-side prepared statement, run through ``psycopg.pq`` for the hottest path.

A send of the backend's own is one small statement, and psycopg's cursor machinery
(query conversion, parameter adaptation, the prepared-statement cache, a generator per
wait) costs the sending process more CPU than the statement costs PostgreSQL. A
``Prepared`` skips all of that: it is prepared once per connection with ``$n``
placeholders, and run with parameters the caller has already made ``bytes``; the rows
come back as text (``bytes``), for the caller to read.

It runs on a psycopg ``AsyncConnection`` that others share, holding the connection's
``lock`` (the lock psycopg's own statements take), so it never interleaves with them.
A failed connection raises ``psycopg.OperationalError`` and leaves the connection
``broken``; a statement PostgreSQL refuses raises the ``psycopg.Error`` subclass of its
SQLSTATE, as psycopg's own ``execute`` would. Cancelling it mid-statement leaves the
connection in an unknown state: the caller must drop it (``Link`` does).

Only public psycopg API is used (``psycopg.pq``, ``AsyncConnection.pgconn``, ``.lock``,
``psycopg.errors.error_from_result``). Imports psycopg and asyncio; nothing of ours.
"""

from __future__ import annotations

import asyncio
import codecs
from typing import TYPE_CHECKING, Any, final

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Prepared"]

_TEXT, _BINARY = 0, 1
#: Seconds between checks that the connection is still open, while a wait lasts.
_RECHECK = 0.1
#: SQLSTATE invalid_sql_statement_name: the server forgot the statement (``DISCARD``).
_UNKNOWN_STATEMENT = "26000"


@final
class Prepared:
    """A statement prepared on each connection it runs on (see the module docstring).

    Args:
        name: the server-side name (unique among the connection's statements).
        sql: the statement, with ``$1``, ``$2``... placeholders.
        binary: which parameters are sent in binary format (``bytea``), by position;
            the others are text.
    """

    __slots__ = ("_formats", "_name", "_on", "_sql")

    def __init__(self, name: str, sql: str, binary: Sequence[bool]) -> None:
        self._name = name.encode()
        self._sql = sql.encode()
        self._formats = [_BINARY if flag else _TEXT for flag in binary]
        #: The libpq connection it was last prepared on.
        self._on: object | None = None

    async def run(
        self, connection: psycopg.AsyncConnection[Any], params: Sequence[bytes | None]
    ) -> list[tuple[bytes | None, ...]]:
        """The rows the statement answers, each value as text ``bytes`` (or ``None``).

        Raises:
            psycopg.OperationalError: the connection failed.
            psycopg.Error: PostgreSQL refused the statement.

        Cancelling it leaves the connection in an unknown state (drop it).
        """
        async with connection.lock:
            pgconn = connection.pgconn
            _check_open(pgconn)
            if self._on is not pgconn:
                await self._prepare(pgconn)
            pgconn.send_query_prepared(self._name, params, self._formats, _TEXT)
            result = await _result(pgconn)
            if (
                result.status == pq.ExecStatus.FATAL_ERROR
                and result.error_field(pq.DiagnosticField.SQLSTATE) == _UNKNOWN_STATEMENT.encode()
            ):
                await self._prepare(pgconn)  # once more, after the server forgot it
                pgconn.send_query_prepared(self._name, params, self._formats, _TEXT)
                result = await _result(pgconn)
            if result.status != pq.ExecStatus.TUPLES_OK:
                raise _error(result, pgconn)
            return [
                tuple(result.get_value(row, column) for column in range(result.nfields))
                for row in range(result.ntuples)
            ]

    async def _prepare(self, pgconn: pq.abc.PGconn) -> None:
        self._on = None
        pgconn.send_prepare(self._name, self._sql)
        result = await _result(pgconn)
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise _error(result, pgconn)
        self._on = pgconn


def _error(result: pq.abc.PGresult, pgconn: pq.abc.PGconn) -> psycopg.Error:
    if result.status == pq.ExecStatus.FATAL_ERROR:
        return error_from_result(result, encoding=_encoding(pgconn))
    return psycopg.DatabaseError(f"unexpected result status {pq.ExecStatus(result.status).name}")


def _encoding(pgconn: pq.abc.PGconn) -> str:
    name = (pgconn.parameter_status(b"client_encoding") or b"UTF8").decode()
    try:
        return codecs.lookup(name).name
    except LookupError:  # a PostgreSQL name Python spells otherwise: only messages suffer
        return "utf-8"


async def _result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
    """Flush what was sent, wait for the statement's results; the first of them.

    One statement gives one result (and ``None`` after it); any more are read and
    dropped, so that the connection is ready for the next statement.
    """
    loop = asyncio.get_running_loop()
    fd = pgconn.socket
    while pgconn.flush():  # 1: the socket's buffer is full; wait until it can take more
        await _wait(loop, fd, write=True)
        _check_open(pgconn)
    first: pq.abc.PGresult | None = None
    while True:
        if pgconn.is_busy():
            await _wait(loop, fd, write=False)
            _check_open(pgconn)
            pgconn.consume_input()
            continue
        result = pgconn.get_result()
        if result is None:
            break
        if first is None:
            first = result
    if first is None:
        message = pgconn.error_message.decode(errors="replace").strip()
        raise psycopg.OperationalError(f"no result from PostgreSQL: {message or 'connection lost'}")
    return first


def _check_open(pgconn: pq.abc.PGconn) -> None:
    if pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection was closed")


async def _wait(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    """Until ``fd`` is ready, or ``_RECHECK`` seconds have passed.

    The caller then asks libpq again, which raises if the connection was closed
    meanwhile (by another task: a closed socket never becomes ready).
    """
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    timer = loop.call_later(_RECHECK, wake)
    try:
        await ready
    finally:
        timer.cancel()
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
