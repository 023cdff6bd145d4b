"""Connections to PostgreSQL: how the backend opens them, and the link its callers share.

Every connection is in autocommit mode (the backend never holds a transaction open: an
open transaction would hold back every reader's snapshot ``xmin``), is named
``<application_name>:<pid>:<role>`` in ``pg_stat_activity``, and has
``synchronous_commit`` turned off only when asked (see ``PostgresBackend``).

``Link`` is one lazily opened ``AsyncConnection`` that concurrent callers share: psycopg
serialises their statements on it, and a broken connection is dropped so that the next
call opens another. It knows nothing of events, so other parts of the library (presence,
say) can run their own statements on it. ``open_sync`` opens the sync connection for
sends from threads.

Only public psycopg API is used. Imports psycopg and anyio; nothing of ours.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "CONNECT_TIMEOUT",
    "IO_TIMEOUT",
    "Link",
    "LinkClosedError",
    "open_async",
    "open_sync",
    "redact",
]

#: Seconds a connection attempt may take.
CONNECT_TIMEOUT = 5
#: Seconds one statement may take (``statement_timeout``), and about how long a dead
#: connection takes to be noticed.
IO_TIMEOUT = 15.0

T = TypeVar("T")


def redact(dsn: str) -> str:
    """``dsn`` without its password, for messages and logs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def _params(application_name: str, role: str) -> dict[str, Any]:
    return {
        "autocommit": True,
        "application_name": f"{application_name}:{os.getpid()}:{role}"[:63],
        "connect_timeout": CONNECT_TIMEOUT,
        # A dead peer or a cut network is noticed by the kernel within about IO_TIMEOUT
        # (no reply to keepalives, or to data sent), without a timer per statement.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": int(IO_TIMEOUT * 1000),
    }


def _settings(synchronous_commit: bool) -> str:
    """What every connection of the backend sets once, in one round trip."""
    setting = f"SET statement_timeout = {int(IO_TIMEOUT * 1000)}"
    if not synchronous_commit:
        setting += "; SET synchronous_commit = off"
    return setting


async def open_async(
    dsn: str, application_name: str, role: str, *, synchronous_commit: bool = True
) -> psycopg.AsyncConnection[Any]:
    """A new autocommit connection (``synchronous_commit`` off unless asked for)."""
    with anyio.fail_after(CONNECT_TIMEOUT + 1):
        connection = await psycopg.AsyncConnection.connect(dsn, **_params(application_name, role))
    try:
        await connection.execute(_settings(synchronous_commit).encode())
    except BaseException:
        with anyio.CancelScope(shield=True):
            await connection.close()
        raise
    return connection


def open_sync(
    dsn: str, application_name: str, role: str, *, synchronous_commit: bool = True
) -> psycopg.Connection[Any]:
    """The sync counterpart of ``open_async`` (for sends from threads)."""
    connection = psycopg.Connection.connect(dsn, **_params(application_name, role))
    try:
        connection.execute(_settings(synchronous_commit).encode())
    except BaseException:
        connection.close()
        raise
    return connection


class LinkClosedError(Exception):
    """The link was closed (``aclose``): it opens no connection any more."""


@final
class Link:
    """One connection that concurrent callers share (see the module docstring).

    Args:
        dsn: where to connect.
        application_name: the start of the connection's name.
        role: the end of its name (``send``, ``presence``...).
        synchronous_commit: whether its commits wait for the WAL flush.
    """

    def __init__(
        self, dsn: str, application_name: str, role: str, *, synchronous_commit: bool = True
    ) -> None:
        self._dsn = dsn
        self._name = application_name
        self._role = role
        self._synchronous_commit = synchronous_commit
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._connecting = anyio.Lock()
        self._closed = False
        #: The last call's outcome: False after a failure, until a call succeeds.
        self.connected = False

    async def run(self, call: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """``await call(connection)`` on the shared connection.

        Statements end within ``IO_TIMEOUT`` (``statement_timeout`` on the server, TCP
        keepalives and ``tcp_user_timeout`` for a dead peer), so no timer runs per call.

        Raises:
            psycopg.Error: the connection failed or the statement did; after a connection
                failure the connection is dropped (the next call opens another).
            LinkClosedError: the link was closed.

        Cancelling it drops the connection if a statement was under way.
        """
        connection = await self._connect()
        try:
            result = await call(connection)
        except psycopg.OperationalError:
            self.connected = False
            await self._drop(connection)
            raise
        except BaseException as exc:
            if not isinstance(exc, psycopg.Error) or connection.broken:
                # Cancelled or timed out mid-statement: the connection's state is unknown.
                self.connected = False
                await self._drop(connection)
            raise
        self.connected = True
        return result

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._closed:
            raise LinkClosedError("the link is closed")
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        async with self._connecting:
            connection = self._connection
            if connection is None or connection.closed:
                try:
                    connection = await open_async(
                        self._dsn,
                        self._name,
                        self._role,
                        synchronous_commit=self._synchronous_commit,
                    )
                except BaseException:
                    self.connected = False
                    raise
                if self.closed:  # closed while this connection was being opened
                    with anyio.CancelScope(shield=True):
                        await connection.close()
                    raise LinkClosedError("the link is closed")
                self._connection = connection
        return connection

    async def _drop(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if self._connection is connection:
            self._connection = None
        with anyio.CancelScope(shield=True):
            await connection.close()

    @property
    def closed(self) -> bool:
        """Whether ``aclose`` was called."""
        return self._closed

    async def aclose(self) -> None:
        """Close the connection; later calls raise ``LinkClosedError``. Idempotent."""
        self._closed = True
        connection = self._connection
        if connection is not None:
            await self._drop(connection)
        self.connected = False
