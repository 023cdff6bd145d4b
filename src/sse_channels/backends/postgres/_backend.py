"""PostgresBackend: the Backend Protocol on a PostgreSQL outbox table, composed of the parts.

**The order.** Every event is a row of ``events`` at position ``(txid, id)``: the
inserting transaction's ``pg_current_xact_id()`` and an identity value. Ids are taken when
rows are inserted, but transactions commit in another order, so a reader cannot simply
read "after the last id": a transaction holding a smaller id may commit later. Readers
therefore read only rows whose ``txid`` is below the ``xmin`` of their statement's
snapshot (``pg_snapshot_xmin(pg_current_snapshot())``): every transaction below ``xmin``
has ended, and every transaction that has not got an id yet will get one above it. The
set of rows below any ``xmin`` is thus final: nothing can later appear in it. Readers
deliver in ``(txid, id)`` order, which every process and every history read agrees on; a
client that resumes from an id resumes from its position, and nothing can commit before
it afterwards. The order is the order in which the transactions got their ids (their
first write), not the order of their commits; within a transaction, insertion order.

The cost: while any transaction of the cluster that has an id stays open, events of
later transactions are held back (delivered when it ends). Keep transactions short; one
idle-in-transaction session delays every event. Statistics count such reads
(``held_reads``).

**The doorbell.** Every insert also calls ``pg_notify`` in its transaction, so the
notification fires at commit. It wakes the reader; it carries nothing. The reader also
reads every ``poll_interval`` (a missed notification costs at most that), and soon again
after a read that found events held back.

**Connections.** Three per process at most: the reader's (``LISTEN`` and reads), the
link (sends, history reads, trims) and, only when ``send_sync`` is used from threads, a
sync one. See ``_link``.

The modules, each with one job: ``_schema`` (tables and statements), ``_ids`` (positions,
keys, epochs, ids), ``_rows`` (rows to events), ``_link`` (connections), ``_prepared``
(the send's statement through ``psycopg.pq``), ``_sender`` (batched, retried sends),
``_watch`` (what is delivered here), ``_health`` (counters), ``_outbox`` (sending in the
application's transaction).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, final

import anyio
import psycopg

from ..._exceptions import BackendError
from ..._pattern import is_pattern
from ._health import Health, describe
from ._ids import Epoch, event_id, split_key
from ._link import IO_TIMEOUT, Link, LinkClosedError, open_async, open_sync, redact
from ._rows import MalformedRow, columns, event_of
from ._schema import Sql
from ._sender import Sender, answers, backoff
from ._watch import Watching

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.abc import TaskGroup

    from ..._event import Event
    from .._base import Deliver

__all__ = ["PostgresBackend"]

_log = logging.getLogger("sse_channels.postgres")

#: Seconds the reader waits after a read that found events, before the next one.
_LINGER = 0.005
#: Seconds a statement of the reader may go on after ``aclose`` before it is cut off.
_CLOSE_GRACE = 2.0
#: Rows one skim (nothing watched) passes at most.
_SKIM_LIMIT = 100_000
#: Rows one read takes at most.
READ_LIMIT = 500
#: First wait before reading again when events are held back by an open transaction.
_HELD_FIRST = 0.002
_HELD_LONGEST = 0.1
#: Seconds a history read waits for its range to become final before it gives up.
_FINAL_WAIT = 10.0
#: Rows deleted by one age trim at most.
_AGE_TRIM_LIMIT = 10_000


@final
class PostgresBackend:
    """Carries a store's channels through PostgreSQL so that many processes share them.

    Use one per process, give it to the store, and run the store in your app's lifespan
    so that the reader task has an owner::

        store = ChannelStore(backend=PostgresBackend("postgresql://app@db/app"))

        async def lifespan(app):
            async with store:  # creates the tables if needed, starts the reader
                yield

    Ids look like ``3f9a1c2e-7731.1042``. Events sent from any process, and events written
    in the application's own transactions with [send_in][sse_channels.backends.postgres.send_in],
    reach the subscribers of every process, in one order, once. A client may resume on any
    server. docs/postgres.md says how the order is made and what it costs.

    Args:
        dsn: a libpq connection string or URL.
        schema: the schema of the backend's tables (a lower-case SQL identifier); stores
            with different schemas are apart.
        maxlen: events a resume reaches back per channel. Make it at least the store's
            ``history``, and give every process that shares ``schema`` the same value.
        max_age: delete events older than this many seconds (``None``: keep them, up to
            ``maxlen`` per channel). Resuming from before them gives a gap signal.
        poll_interval: longest time, in seconds, the reader waits for the doorbell.
        trim_interval: seconds between retention trims (run by one process at a time).
        synchronous_commit: whether the backend's own sends wait for the WAL flush (by
            default they keep the server's setting, PostgreSQL's default being on: a
            send that returned survives a crash of PostgreSQL). ``False``
            saves a disk flush per commit, at a risk: if PostgreSQL crashes (power, kill
            -9, not a clean restart), the last moments of acknowledged sends (at most
            three times ``wal_writer_delay``, 0.6 s by default) may be lost after readers
            delivered them, and their ids may then be given to other events, which
            clients that saw the lost ones skip. Events written by ``send_in`` follow
            the application's own setting.
        create_schema: create the tables on start if they are missing (else run
            [schema_sql][sse_channels.backends.postgres.schema_sql] yourself).
        retry_for: seconds a send keeps retrying while PostgreSQL is unreachable.
        max_backoff: longest wait, in seconds, between reconnection attempts.
        application_name: shown by ``pg_stat_activity`` as ``<name>:<pid>:<role>``.

    Raises:
        ValueError, TypeError: a bad argument.
    """

    def __init__(
        self,
        dsn: str = "postgresql://localhost/postgres",
        *,
        schema: str = "sse",
        maxlen: int = 1000,
        max_age: float | None = None,
        poll_interval: float = 0.5,
        trim_interval: float = 1.0,
        synchronous_commit: bool = True,
        create_schema: bool = True,
        retry_for: float = 10.0,
        max_backoff: float = 5.0,
        application_name: str = "sse-channels",
    ) -> None:
        if type(dsn) is not str or not dsn:
            raise TypeError("dsn must be a non-empty str")
        self._sql = Sql(schema)  # checks the schema name
        if type(maxlen) is not int or maxlen < 1:
            raise ValueError(f"maxlen must be an int of at least 1, not {maxlen!r}")
        if max_age is not None and not (
            isinstance(max_age, (int, float)) and 0 < max_age < math.inf
        ):
            raise ValueError(f"max_age must be positive seconds or None, not {max_age!r}")
        for name, value in (
            ("poll_interval", poll_interval),
            ("trim_interval", trim_interval),
            ("retry_for", retry_for),
            ("max_backoff", max_backoff),
        ):
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be positive seconds, not {value!r}")
        for name, flag in (
            ("synchronous_commit", synchronous_commit),
            ("create_schema", create_schema),
        ):
            if type(flag) is not bool:
                raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
        if (
            type(application_name) is not str
            or not application_name.isprintable()
            or " " in application_name
        ):
            raise ValueError(f"application_name must be printable, no spaces: {application_name!r}")
        self._dsn = dsn
        self._maxlen = maxlen
        self._max_age = None if max_age is None else float(max_age)
        self._poll = float(poll_interval)
        self._trim_interval = float(trim_interval)
        self._synchronous_commit = synchronous_commit
        self._create = create_schema
        self._retry_for = float(retry_for)
        self._max_backoff = float(max_backoff)
        self._name = application_name
        self._deliver: Deliver | None = None

        self._epoch = Epoch()
        self._watching = Watching()
        self._health = Health()
        #: Delivered through: the reader's position ``(txid, id)`` in the current epoch.
        self._position = (0, 0)
        self._trim_seq = 0
        #: Per channel watched ahead of the reader: the key it was watched at.
        self._since: dict[str, int] = {}
        #: Set when something is watched: wakes a reader that idles while nothing is.
        self._activity = anyio.Event()
        self._read_cursor: psycopg.AsyncCursor[Any] | None = None

        self._link: Link | None = None
        self._sender: Sender | None = None
        self._sync_connection: psycopg.Connection[Any] | None = None
        self._sync_lock = threading.Lock()
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None
        self._reading = False
        self._closed = False
        #: The reader's statement under way, shielded from the backend's close (see
        #: ``_statement``); ``None`` between statements.
        self._statement_scope: anyio.CancelScope | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def attach(self, deliver: Deliver) -> None:
        self._deliver = deliver

    @property
    def link(self) -> Link | None:
        """The shared connection (for parts of the library that build on this backend)."""
        return self._link

    async def start(self, task_group: TaskGroup | None = None) -> None:
        """Connect, create the tables if needed, and with a task group start the reader.

        Without a task group (a store used without ``async with``) the backend can send
        but not deliver: subscribing raises ``RuntimeError``.

        Raises:
            RuntimeError: not running on asyncio (psycopg's async connections need it).
            BackendError: PostgreSQL cannot be reached, or the tables cannot be made.
        """
        _require_asyncio()
        if self._closed:
            raise BackendError("the PostgreSQL backend is closed")
        if self._link is None:
            link = Link(self._dsn, self._name, "send", synchronous_commit=self._synchronous_commit)
            try:
                await link.run(self._begin)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                await link.aclose()
                raise BackendError(
                    f"cannot start on PostgreSQL at {redact(self._dsn)}: {exc}"
                ) from exc
            self._link = link
            self._sender = Sender(
                link, self._sql, self._health, self._known_position, self._retry_for
            )
        if task_group is not None and not self._reading:
            self._reading = True
            await task_group.start(self._run)

    async def _begin(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Create the tables (if asked), then take the epoch and the log's current end."""
        if self._create:
            await connection.execute(self._sql.ensure)
        cursor = await connection.execute(self._sql.tail)
        row = await cursor.fetchone()
        if row is None or row[0] is None:
            raise BackendError(
                f"the schema {self._sql.schema!r} has no epoch row: run schema_sql() first"
            )
        label, tail, seq = row
        self._adopt(str(label))
        if tail is not None:
            txid, _, row_id = str(tail).partition(".")
            self._position = (int(txid), int(row_id))
            self._epoch.saw(self._epoch.key(*self._position))
        self._trim_seq = int(seq)

    async def aclose(self) -> None:
        """Stop the reader and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._scope is not None:
            statement = self._statement_scope
            if statement is not None:  # let it finish, briefly, rather than cut it off
                statement.deadline = min(statement.deadline, anyio.current_time() + _CLOSE_GRACE)
            self._scope.cancel()
            if self._stopped is not None:
                await self._stopped.wait()
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()
        with self._sync_lock:
            connection, self._sync_connection = self._sync_connection, None
        if connection is not None:
            connection.close()

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with anyio.create_task_group() as group:
                    assert self._sender is not None
                    await group.start(self._sender.run)
                    group.start_soon(self._trim_forever)
                    await group.start(self._read_forever)
                    task_status.started()
        finally:
            self._reading = False
            self._health.reader_connected = False
            self._stopped.set()

    # -- ids ---------------------------------------------------------------------------

    def format_id(self, key: int) -> str:
        return self._epoch.format_id(key)

    def parse_id(self, event_id: str) -> int | None:
        return self._epoch.parse_id(event_id)

    def latest_key(self) -> int:
        return self._epoch.latest

    def _known_position(self) -> tuple[int, int]:
        """A position that precedes anything sent from now on (for a send's lookups)."""
        return split_key(self._epoch.latest) if self._epoch.latest > self._epoch.base else (0, 0)

    def _adopt(self, label: str) -> None:
        """Follow the epoch PostgreSQL reports; a new one means the log was lost."""
        if not label.isprintable() or "-" in label or " " in label or not label:
            raise BackendError(f"the epoch label {label!r} in meta is not one of ours")
        if not self._epoch.adopt(label):
            return
        _log.warning("the PostgreSQL event log is new (epoch %s); subscribers get a gap", label)
        self._position = (0, 0)
        self._trim_seq = 0
        self._since.clear()
        for channel in self._watching.delivered():
            self._gap(channel, self._epoch.base)

    # -- sending -----------------------------------------------------------------------

    async def publish(self, channel: str, event: Event) -> Event:
        """Insert the event (batched with concurrent sends); the reader then delivers it.

        Raises:
            BackendError: PostgreSQL could not be reached within ``retry_for`` seconds, or
                refused the event; the event was not stored.

        Cancelling it may or may not have stored the event.
        """
        sender = self._sender
        if sender is None or self._closed:
            raise BackendError("the PostgreSQL backend is not started (or closed)")
        label, txid, row_id = await sender.send((channel, *columns(event)))
        return self._published(event, label, txid, row_id)

    def _published(self, event: Event, label: str, txid: int, row_id: int) -> Event:
        if label == self._epoch.label:
            self._epoch.saw(self._epoch.key(txid, row_id))
        return event if event.id is not None else event.with_id(event_id(label, txid, row_id))

    def publish_sync(self, channel: str, event: Event) -> Event | None:
        """Send from a thread without an event loop (Celery task, WSGI view).

        Raises:
            BackendError: PostgreSQL could not be reached within ``retry_for`` seconds,
                or refused the event.
        """
        if self._closed:
            raise BackendError("the PostgreSQL backend is closed")
        token = secrets.token_hex(8)
        params = (channel, *columns(event), token)
        after = self._known_position()
        deadline = time.monotonic() + self._retry_for
        attempt = 0
        sql = self._sql
        with self._sync_lock:
            while True:
                try:
                    connection = self._sync_connection
                    if connection is None or connection.closed:
                        connection = self._sync_connection = open_sync(
                            self._dsn,
                            self._name,
                            "sync",
                            synchronous_commit=self._synchronous_commit,
                        )
                    if attempt:
                        found = connection.execute(
                            sql.find_token, (str(after[0]), after[1], token)
                        ).fetchall()
                        if found:
                            label_row = connection.execute(
                                f"SELECT value FROM {sql.schema}.meta WHERE name = 'epoch'"
                            ).fetchone()
                            ((label, txid, row_id),) = answers(found, str(label_row[0]))  # type: ignore[index]
                            break
                    rows = connection.execute(sql.insert_single, params).fetchall()
                    ((label, txid, row_id),) = answers(rows)
                    break
                except (psycopg.OperationalError, OSError) as exc:
                    self._health.last_error = describe(exc)
                    if self._sync_connection is not None:
                        self._sync_connection.close()
                        self._sync_connection = None
                    attempt += 1
                    wait = backoff(attempt, 0.05, 1.0)
                    if time.monotonic() + wait > deadline:
                        raise BackendError(f"could not send to PostgreSQL: {exc}") from exc
                    time.sleep(wait)
                except (psycopg.Error, ValueError) as exc:
                    self._health.last_error = describe(exc)
                    raise BackendError(f"PostgreSQL refused the event: {exc}") from exc
        return event if event.id is not None else event.with_id(event_id(label, txid, row_id))

    # -- watching ----------------------------------------------------------------------

    def watch(self, channel: str) -> int:
        """Deliver ``channel`` (or every channel matching a ``*`` pattern) to this process.

        Raises:
            RuntimeError: the reader is not running (use the store as ``async with store``).
        """
        if not self._reading or self._closed:
            raise RuntimeError(
                "PostgresBackend delivers events only while its reader runs: enter the "
                "store first (`async with store:` in your app's lifespan)"
            )
        self._watching.watch(channel)
        self._activity.set()  # an idle reader starts reading rows again
        # Complete after the newest key known here, which may be above what the reader has
        # passed (this process's own sends): rows of the channel up to it are not handed
        # over live; a resume reads them from history, which waits until they are final.
        latest = self._epoch.latest
        if not is_pattern(channel) and latest > self._epoch.key(*self._position):
            self._since[channel] = latest
        return latest

    def unwatch(self, channel: str) -> None:
        self._watching.unwatch(channel)
        self._since.pop(channel, None)

    # -- reading -----------------------------------------------------------------------

    async def _read_forever(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        health = self._health
        attempt = 0
        first = True
        lost_at: float | None = None
        while True:
            connection: psycopg.AsyncConnection[Any] | None = None
            try:
                connection = await open_async(self._dsn, self._name, "listen")
                if lost_at is not None and self._create:
                    # The tables may be gone with the server's data: make them anew.
                    await connection.execute(self._sql.ensure)
                if lost_at is not None:
                    _log.info("PostgreSQL reader connected again")
                    lost_at = None
                health.reader_connected = True
                attempt = 0
                if first:
                    first = False
                    task_status.started()
                held_wait = _HELD_FIRST
                listening = False
                while True:
                    if not self._watching.active:
                        # Nothing to deliver: no doorbell (a listener that never reads
                        # would hold back PostgreSQL's notification queue); follow the
                        # log's end every poll_interval, or until something is watched.
                        if listening:
                            with self._statement():
                                await connection.execute(f'UNLISTEN "{self._sql.doorbell}"')
                            listening = False
                        await self._follow_tail(connection)
                        self._activity = anyio.Event()
                        if not self._watching.active:
                            with anyio.move_on_after(self._poll):
                                await self._activity.wait()
                        continue
                    if not listening:
                        # Listen first, then read: nothing committed after the read's
                        # snapshot can ring unheard.
                        with self._statement():
                            await connection.execute(f'LISTEN "{self._sql.doorbell}"')
                        listening = True
                    events, full, held = await self._read_once(connection)
                    if full:
                        continue
                    if events:
                        # Events are flowing: let the next ones gather for a moment, so that
                        # one read (and one wake-up of each subscriber) carries several.
                        # The first event after a quiet spell is never held back.
                        await anyio.sleep(_LINGER)
                    if held:
                        health.held_reads += 1
                        wait, held_wait = held_wait, min(held_wait * 2, _HELD_LONGEST)
                    else:
                        wait, held_wait = self._poll, _HELD_FIRST
                    await self._doorbell(connection, min(wait, self._poll))
            except Exception as exc:  # psycopg.Error, OSError, TimeoutError, a bad row
                if lost_at is None:
                    lost_at = time.monotonic()
                if health.reader_connected:  # a connection lost, not a failed attempt
                    health.reconnects += 1
                health.reader_connected = False
                health.last_error = describe(exc)
                _log.warning("PostgreSQL reader lost its connection (%s); retrying", describe(exc))
                if first:
                    first = False
                    task_status.started()
                await anyio.sleep(backoff(attempt, 0.05, self._max_backoff))
                attempt += 1
            finally:
                if connection is not None:
                    with anyio.CancelScope(shield=True):
                        await connection.close()

    @contextmanager
    def _statement(self) -> Iterator[None]:
        """Where the reader runs a statement: closing the backend lets it finish first.

        psycopg answers a cancellation in the middle of a statement by asking the server to
        cancel it, which the cancel scope interrupts in turn: psycopg then logs "query
        cancellation interrupted" and drops the connection, on every close that comes while
        the reader is reading. So a statement is shielded; ``aclose`` gives it
        ``_CLOSE_GRACE`` seconds to end before it is cut off after all.
        """
        with anyio.CancelScope(shield=True) as scope:
            if self._closed:
                scope.deadline = anyio.current_time() + _CLOSE_GRACE
            self._statement_scope = scope
            try:
                yield
            finally:
                self._statement_scope = None

    async def _doorbell(self, connection: psycopg.AsyncConnection[Any], timeout: float) -> None:
        """Wait for a notification (or ``timeout``); take every one already received."""
        async for _ in connection.notifies(timeout=timeout, stop_after=1):
            pass

    async def _follow_tail(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """With nothing watched: move past the new final rows, only counting them per channel."""
        txid, row_id = self._position
        generation = self._epoch.generation
        with self._statement(), anyio.fail_after(IO_TIMEOUT):
            cursor = await connection.execute(self._sql.skim, (str(txid), row_id, _SKIM_LIMIT))
            rows = await cursor.fetchall()
        for kind, text, _ in rows:
            if kind == 2:
                self._adopt(str(text))
        if generation != self._epoch.generation or self._watching.active:
            return  # a new log (read it from its start), or watched meanwhile: read rows
        for kind, text, number in rows:
            if kind == 0:
                self._watching.grew(str(text), int(number))
            elif kind == 1 and text is not None:
                txid_text, _, id_text = str(text).partition(".")
                self._position = (int(txid_text), int(id_text))
                self._epoch.saw(self._epoch.key(*self._position))
            elif kind == 3:
                self._trim_seq = max(self._trim_seq, int(number))

    async def _read_once(self, connection: psycopg.AsyncConnection[Any]) -> tuple[int, bool, bool]:
        """One read handed to the store; ``(events read, it hit the limit, held back)``."""
        generation = self._epoch.generation
        txid, row_id = self._position
        # No timer: the connection's statement_timeout and TCP keepalives bound the read.
        cursor = self._read_cursor
        if cursor is None or cursor.connection is not connection:
            cursor = self._read_cursor = connection.cursor()
        with self._statement():
            await cursor.execute(
                self._sql.read, (str(txid), row_id, READ_LIMIT, self._trim_seq), prepare=True
            )
            rows = await cursor.fetchall()
        if generation != self._epoch.generation:
            return 0, True, False  # a send found a new epoch meanwhile: read from its start
        held = False
        events = 0
        for row in rows:
            if row[0] == 3:
                self._adopt(str(row[3]))
                if generation != self._epoch.generation:
                    return 0, True, False  # the rows read were of the new log: read again
        epoch, watching = self._epoch, self._watching
        label = epoch.label or ""
        before = self._position
        # Trims first: a channel's gap must come before its events that follow the gap.
        for kind, txid_text, row_id, channel, *rest in rows:
            if kind == 1:
                self._trim_seq = max(self._trim_seq, int(rest[3]))
                trimmed = (int(txid_text), row_id)
                ahead = self._since.get(channel)
                if (
                    trimmed > before
                    and watching.wants(channel)
                    and (ahead is None or epoch.key(*trimmed) > ahead)
                ):
                    # Trimmed before this process read it: say so, then go on after it.
                    self._gap(channel, epoch.key(*trimmed))
            elif kind == 2:
                held = True
        position = before
        since = self._since
        for kind, txid_text, row_id, channel, data, event_type, retry, extra in rows:
            if kind != 0:
                continue
            events += 1
            txid = int(txid_text)
            position = (txid, row_id)
            watching.grew(channel)
            if not watching.wants(channel):
                continue
            key = epoch.key(txid, row_id)
            if since:
                ahead = since.get(channel)
                if ahead is not None:
                    if key <= ahead:
                        continue  # before the channel was watched (see watch())
                    del since[channel]
            try:
                event = event_of(channel, label, txid, row_id, data, event_type, retry, extra)
            except MalformedRow as exc:
                self._health.last_error = describe(exc)
                _log.warning("skipped a row the backend cannot read: %s", exc)
                self._gap(channel, key)
                continue
            self._health.events_read += 1
            self._hand_over(channel, key, event)
        self._position = position
        epoch.saw(epoch.key(*position))
        return events, events >= READ_LIMIT, held

    def _gap(self, channel: str, key: int) -> None:
        self._health.gaps += 1
        self._hand_over(channel, key, None)

    def _hand_over(self, channel: str, key: int, event: Event | None) -> None:
        assert self._deliver is not None, "attach() first"
        try:
            self._deliver(channel, key, event)
        except Exception:
            # A listen() callback raised; the reader must go on for everyone else.
            _log.exception("a listener of channel %r raised", channel)

    # -- trimming ----------------------------------------------------------------------

    async def _trim_forever(self) -> None:
        """Retention: each channel beyond ``maxlen`` rows, and rows older than ``max_age``."""
        threshold = max(1, self._maxlen // 10)
        while True:
            await anyio.sleep(self._trim_interval)
            link = self._link
            if link is None:
                continue
            channels = self._watching.to_trim(threshold)
            try:
                if channels:
                    await link.run(self._trimmer(self._sql.trim_count, (channels, self._maxlen)))
                if self._max_age is not None:
                    await link.run(
                        self._trimmer(self._sql.trim_age, (self._max_age, _AGE_TRIM_LIMIT))
                    )
            except LinkClosedError:
                return  # the backend is closing
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self._health.last_error = describe(exc)
                _log.warning("retention trimming failed (%s); trying again later", describe(exc))

    def _trimmer(self, statement: str, params: tuple[Any, ...]) -> Any:
        async def trim(connection: psycopg.AsyncConnection[Any]) -> None:
            cursor = await connection.execute(statement, params)
            self._health.trimmed += max(cursor.rowcount, 0)

        return trim

    # -- history -----------------------------------------------------------------------

    async def history(
        self, channel: str, after: int, through: int
    ) -> tuple[int, list[tuple[int, Event]]] | None:
        """``(gone, events)``: ``channel``'s retained events with ``after < key <= through``.

        ``gone`` is the highest key of the range that is no longer retained (``after`` if
        none): trimmed, or beyond the newest ``maxlen`` of the channel. ``None`` when it
        cannot tell (another epoch, PostgreSQL unreachable): the subscriber gets a gap.
        """
        link, epoch = self._link, self._epoch
        generation, label = epoch.generation, epoch.label or ""
        if link is None or after < epoch.base or through >> 128 != generation:
            return None
        if through <= after:
            return after, []
        low, high = split_key(after), split_key(through)
        params = (channel, str(low[0]), low[1], str(high[0]), high[1], channel, channel)
        statement = self._sql.history

        async def read(connection: psycopg.AsyncConnection[Any]) -> list[Any]:
            cursor = await connection.execute(statement, (*params, self._maxlen, str(high[0])))
            return await cursor.fetchall()

        # ``through`` may be this process's own send, with older transactions still open:
        # read once the range is final (nothing can commit into it any more).
        deadline = time.monotonic() + _FINAL_WAIT
        wait = _HELD_FIRST
        while True:
            try:
                rows = await link.run(read)
            except LinkClosedError:
                return None
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self._health.last_error = describe(exc)
                return None
            if any(row[0] == 3 for row in rows):
                break
            if time.monotonic() + wait > deadline:
                return None  # held back by a transaction that stays open: a gap
            await anyio.sleep(wait)
            wait = min(wait * 2, _HELD_LONGEST)
        if generation != epoch.generation:
            return None
        gone = after
        for kind, txid_text, row_id, *_ in rows:
            if kind in (1, 2):
                gone = max(gone, epoch.key(int(txid_text), row_id))
        gone = min(gone, through)
        events: list[tuple[int, Event]] = []
        for kind, txid_text, row_id, data, event_type, retry, custom_id in rows:
            if kind != 0:
                continue
            txid = int(txid_text)
            key = epoch.key(txid, row_id)
            if key <= gone:
                continue
            try:
                event = event_of(channel, label, txid, row_id, data, event_type, retry, custom_id)
            except MalformedRow as exc:
                self._health.last_error = describe(exc)
                gone, events = key, []  # what came before it cannot be handed out as complete
                continue
            events.append((key, event))
        return gone, events

    # -- health ------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        """``connected``, ``reconnects`` and ``last_error`` for a readiness probe, and more.

        ``connected`` is the reader's connection while the reader runs, else the link's
        last outcome. ``held_reads`` counts reads that found committed events held back
        by an older transaction still open.
        """
        link, health = self._link, self._health
        connected = health.reader_connected if self._reading else bool(link and link.connected)
        return {
            "backend": "postgres",
            "connected": connected,
            "reconnects": health.reconnects,
            "last_error": health.last_error,
            "epoch": self._epoch.label,
            "reading": self._reading,
            "channels": self._watching.channels,
            "patterns": self._watching.patterns,
            "events_read": health.events_read,
            "gaps": health.gaps,
            "held_reads": health.held_reads,
            "trimmed": health.trimmed,
            "pid": os.getpid(),
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else "reading" if self._reading else "idle"
        return f"<PostgresBackend schema={self._sql.schema!r} {state}>"


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "PostgresBackend runs on asyncio only (psycopg's async connections need it); "
            "use anyio's asyncio backend, or MemoryBackend on trio"
        ) from None
