"""Connections to Redis: the shared, pipelining link, the reader's requests, and the URL.

The link is one connection that concurrent callers share. Each caller queues a request;
whoever finds the link idle writes every queued request in one go and reads the replies,
which Redis sends in order, then goes on while more arrived meanwhile. Concurrent sends
thus cost one round trip together, and no pool is needed.

Only public redis-py API is used: ``ConnectionPool.from_url`` / ``make_connection``, and a
connection's ``connect``, ``send_packed_command``, ``read_response`` and
``disconnect(nowait=True)`` (all present from redis-py 5.0 to 8.2).

A request that gets no reply within ``timeout`` breaks the connection. With a task group
(``guard()`` running in it) a watchdog checks the one batch in flight once per tick and
disconnects it, which costs a batch nothing but reading the clock. Without one, each batch
runs in an ``anyio.fail_after`` scope. Neither cancels a task that it does not own, so the
design needs no ``Task.uncancel`` (absent before Python 3.11).

Imports redis-py and anyio; nothing of ours.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, final
from urllib.parse import urlsplit

import anyio
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

__all__ = ["IO_TIMEOUT", "Link", "ask", "open_pool", "redact"]

#: Seconds a request may take before its connection counts as dead.
IO_TIMEOUT = 10.0


def open_pool(url: str, client_name: str) -> redis.asyncio.ConnectionPool:
    """A pool used only to make connections from ``url``.

    No automatic retries (a retried send could store its event twice; the backend retries
    in a way that cannot), and no socket timeout (the callers set deadlines: redis-py's
    socket timeout costs a task per send on Python 3.11).
    """
    return redis.asyncio.ConnectionPool.from_url(
        url,
        client_name=client_name,
        socket_timeout=None,
        socket_connect_timeout=5.0,
        retry=AsyncRetry(NoBackoff(), 0),
    )


def redact(url: str) -> str:
    """``url`` without its password (in the user part or the query), for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: say nothing of it
        return "<unparsable URL>"
    items = parts.query.split("&")
    secret = [item.lower().startswith("password=") for item in items]
    if password is None and not any(secret):
        return url
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = "&".join(
        "password=***" if hidden else item for item, hidden in zip(items, secret, strict=True)
    )
    text = f"{parts.scheme}://{netloc}{parts.path}"  # "unix:///path" keeps its slashes
    if query:
        text += "?" + query
    if parts.fragment:
        text += "#" + parts.fragment
    return text


async def ask(connection: AbstractConnection, command: bytes, timeout: float) -> Any:
    """One request on a connection of the caller's own (the reader's), with a deadline."""
    with anyio.fail_after(timeout):
        await connection.send_packed_command(command, check_health=False)
        return await connection.read_response()


@final
class Link:
    """One connection that concurrent callers share (see the module docstring).

    If the connection fails, every request not yet answered fails with a redis-py
    ``ConnectionError`` (or ``TimeoutError`` past the deadline); its caller may retry, and
    the next request reconnects.
    """

    def __init__(self, pool: redis.asyncio.ConnectionPool, timeout: float = IO_TIMEOUT) -> None:
        self._pool = pool
        self._timeout = timeout
        self._connection: AbstractConnection | None = None
        self._queue: list[tuple[bytes, int, asyncio.Future[Any]]] = []
        self._leader: asyncio.Future[Any] | None = None
        #: When the batch in flight was written (``None``: none is), for the watchdog.
        self._busy_since: float | None = None
        self._guarded = False
        self._overdue = False
        #: The last exchange's outcome (for ``statistics()``).
        self.connected = False

    async def call(self, command: bytes, replies: int = 1) -> Any:
        """Send one packed command (``replies`` replies for a MULTI block); its reply.

        Raises:
            redis.exceptions.ResponseError: Redis refused the command.
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError: no reply (the
                command may or may not have run).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, replies, future))
        if self._leader is None:
            self._leader = future
            try:
                await self._drain()
            finally:
                self._leader = None
        return await future

    async def guard(self) -> None:
        """Break the connection when a batch outlives the timeout; runs until cancelled."""
        tick = min(1.0, self._timeout / 4)
        self._guarded = True
        try:
            while True:
                await anyio.sleep(tick)
                since = self._busy_since
                if since is not None and time.monotonic() - since > self._timeout:
                    connection = self._connection
                    if connection is not None:
                        self._overdue = True
                        # The batch's reads then fail, and its leader fails the batch.
                        await connection.disconnect(nowait=True)
        finally:
            self._guarded = False

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            answered = [0]
            try:
                if self._guarded:
                    self._busy_since = time.monotonic()
                    try:
                        await self._exchange(batch, answered)
                    finally:
                        self._busy_since = None
                else:
                    with anyio.fail_after(self._timeout):
                        await self._exchange(batch, answered)
                self.connected = True
            except BaseException as exc:
                self.connected = False
                await self._drop()
                failure: RedisConnectionError | RedisTimeoutError
                if self._overdue or isinstance(exc, TimeoutError):
                    failure = RedisTimeoutError(f"no reply from Redis within {self._timeout} s")
                else:
                    failure = RedisConnectionError(f"connection lost: {exc!r}")
                self._overdue = False
                for _, _, future in batch[answered[0] :] + self._queue:
                    if future is self._leader and not isinstance(exc, Exception):
                        future.cancel()  # its caller is being cancelled and will not look
                    elif not future.done():
                        future.set_exception(failure)
                self._queue = []
                if not isinstance(exc, Exception):
                    raise

    async def _exchange(
        self, batch: list[tuple[bytes, int, asyncio.Future[Any]]], answered: list[int]
    ) -> None:
        """Write the batch in one go, then hand out its replies in order."""
        connection = await self._connect()
        await connection.send_packed_command(
            b"".join([command for command, _, _ in batch]), check_health=False
        )
        for _, replies, future in batch:
            results: list[Any] = []
            error: ResponseError | None = None
            for _ in range(replies):
                try:
                    results.append(await connection.read_response())
                except ResponseError as exc:  # read the rest: replies stay aligned
                    error = error or exc
            answered[0] += 1
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(results[0] if replies == 1 else results)

    async def _connect(self) -> AbstractConnection:
        connection = self._connection
        if connection is None:
            connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            self._connection = connection
            await connection.connect()
        return connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.disconnect()

    async def aclose(self) -> None:
        """Close the connection (the next call would open another)."""
        await self._drop()
        self.connected = False
