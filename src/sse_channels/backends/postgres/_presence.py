"""PostgresPresence: one presence view for every process, in PostgreSQL tables.

Four tables in the schema (``sse`` by default), created on start:

- ``presence_connections (channel, connection, member, meta, process)``: one row per
  connection, primary key ``(channel, connection)``;
- ``presence_members (channel, member, connections, version)``: the member's connection
  count and the version of its join; its row lock decides "first" and "last" connection;
- ``presence_versions (channel, version)``: the channel's last version, from the clock in
  microseconds or the last one plus 1, whichever is higher;
- ``presence_processes (process, expires_at)`` and ``presence_swept (process, at)``: the
  heartbeats, and the processes whose connections were expired.

``add`` and ``remove`` are one statement each (the functions ``presence_add`` and
``presence_remove``, made with the tables): one round trip and one transaction per change,
taking the connection row, then the member row, then the channel's version row, always in
that order. The sweep removes a
dead process's connections one transaction each, with ``remove``'s statements: if two
processes sweep at once, each row is deleted by one of them, so each leave is announced
once.

Imports psycopg, anyio, ``sse_channels._presence`` and ``_link`` / ``_schema``.
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING, Any, TypeVar, final

import anyio

from ..._presence import PresenceChange
from ._link import Link
from ._schema import check_schema

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import psycopg
    from anyio.abc import TaskGroup

    from ..._presence import Announce

__all__ = ["PostgresPresence", "PresenceSql"]

T = TypeVar("T")

#: Expired processes one sweep removes (the rest wait for the next sweep).
_SWEEP_LIMIT = 16
_NOW_US = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"


@final
class PresenceSql:
    """The statements of one schema (the name is checked: it is written into the SQL)."""

    def __init__(self, schema: str) -> None:
        s = check_schema(schema)
        self.create = [
            f"CREATE SCHEMA IF NOT EXISTS {s}",
            f"""CREATE TABLE IF NOT EXISTS {s}.presence_connections (
                channel text NOT NULL, connection text NOT NULL, member text NOT NULL,
                meta text NOT NULL, process text NOT NULL, PRIMARY KEY (channel, connection))""",
            f"""CREATE INDEX IF NOT EXISTS presence_connections_process
                ON {s}.presence_connections (process)""",
            f"""CREATE TABLE IF NOT EXISTS {s}.presence_members (
                channel text NOT NULL, member text NOT NULL, connections integer NOT NULL,
                version bigint NOT NULL, PRIMARY KEY (channel, member))""",
            f"""CREATE TABLE IF NOT EXISTS {s}.presence_versions (
                channel text PRIMARY KEY, version bigint NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {s}.presence_processes (
                process text PRIMARY KEY, expires_at timestamptz NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {s}.presence_swept (
                process text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())""",
        ]
        # One round trip per change: add and remove are functions (one statement each, so
        # one transaction each under autocommit), taking the connection row, the member row
        # and the channel's version row, in that order.
        version = f"""INSERT INTO {s}.presence_versions AS pv (channel, version)
                VALUES (p_channel, {_NOW_US}) ON CONFLICT (channel)
                DO UPDATE SET version = GREATEST(pv.version + 1, EXCLUDED.version)
                RETURNING pv.version INTO v;"""
        self.create += [
            f"""CREATE OR REPLACE FUNCTION {s}.presence_add(p_channel text, p_connection text,
                p_member text, p_meta text, p_process text, p_ttl_ms bigint)
            RETURNS bigint LANGUAGE plpgsql AS $$
            DECLARE n integer; v bigint;
            BEGIN
              INSERT INTO {s}.presence_processes (process, expires_at)
                VALUES (p_process, clock_timestamp() + p_ttl_ms * interval '1 millisecond')
                ON CONFLICT (process) DO NOTHING;
              INSERT INTO {s}.presence_connections (channel, connection, member, meta, process)
                VALUES (p_channel, p_connection, p_member, p_meta, p_process)
                ON CONFLICT (channel, connection) DO NOTHING;
              IF NOT FOUND THEN RETURN 0; END IF;
              INSERT INTO {s}.presence_members AS pm (channel, member, connections, version)
                VALUES (p_channel, p_member, 1, 0) ON CONFLICT (channel, member)
                DO UPDATE SET connections = pm.connections + 1 RETURNING pm.connections INTO n;
              IF n > 1 THEN RETURN 0; END IF;
              {version}
              UPDATE {s}.presence_members SET version = v
                WHERE channel = p_channel AND member = p_member;
              RETURN v;
            END $$""",
            f"""CREATE OR REPLACE FUNCTION {s}.presence_remove(p_channel text,
                p_connection text, OUT o_member text, OUT o_version bigint)
            LANGUAGE plpgsql AS $$
            DECLARE n integer; v bigint;
            BEGIN
              DELETE FROM {s}.presence_connections AS pc
                WHERE pc.channel = p_channel AND pc.connection = p_connection
                RETURNING pc.member INTO o_member;
              IF o_member IS NULL THEN RETURN; END IF;
              UPDATE {s}.presence_members AS pm SET connections = pm.connections - 1
                WHERE pm.channel = p_channel AND pm.member = o_member
                RETURNING pm.connections INTO n;
              IF n > 0 THEN o_version := 0; RETURN; END IF;
              DELETE FROM {s}.presence_members AS pm
                WHERE pm.channel = p_channel AND pm.member = o_member;
              {version}
              o_version := v;
            END $$""",
        ]
        self.add = f"SELECT {s}.presence_add(%s, %s, %s, %s, %s, %s)"
        self.remove = f"SELECT o_member, o_version FROM {s}.presence_remove(%s, %s)"
        # The channel's committed version, and not "now": a change still in flight took a
        # version above the committed one (it holds the version row), so it is newer than
        # the snapshot and applies after it; a clock reading here would claim to cover that
        # change while the snapshot cannot see it (its join would then be ignored).
        self.snapshot_version = f"""SELECT COALESCE((SELECT version FROM
            {s}.presence_versions WHERE channel = %s), 0)"""
        self.snapshot_connections = (
            f"SELECT member, meta FROM {s}.presence_connections WHERE channel = %s"
        )
        self.snapshot_members = (
            f"SELECT member, version FROM {s}.presence_members WHERE channel = %s"
        )
        self.count = f"SELECT count(*) FROM {s}.presence_members WHERE channel = %s"
        self.beat = f"""INSERT INTO {s}.presence_processes (process, expires_at)
            VALUES (%s, clock_timestamp() + %s * interval '1 millisecond')
            ON CONFLICT (process) DO UPDATE SET expires_at = EXCLUDED.expires_at"""
        self.was_swept = f"DELETE FROM {s}.presence_swept WHERE process = %s RETURNING 1"
        self.dead = f"""SELECT process FROM {s}.presence_processes
            WHERE expires_at < clock_timestamp() ORDER BY expires_at LIMIT {_SWEEP_LIMIT}"""
        self.connections_of = (
            f"SELECT channel, connection FROM {s}.presence_connections WHERE process = %s"
        )
        self.unlist = f"""DELETE FROM {s}.presence_processes
            WHERE process = %s AND expires_at < clock_timestamp() RETURNING 1"""
        self.mark_swept = f"""INSERT INTO {s}.presence_swept (process) VALUES (%s)
            ON CONFLICT (process) DO UPDATE SET at = now()"""
        self.forget_swept = f"DELETE FROM {s}.presence_swept WHERE at < now() - interval '1 day'"
        self.drop_process = f"DELETE FROM {s}.presence_processes WHERE process = %s"


@final
class PostgresPresence:
    """Presence shared through PostgreSQL by every process: give it to ``Presence``.

    ::

        presence = Presence(store, PostgresPresence(dsn, ttl=15))

    The same guarantees as ``RedisPresence``: one view; the members of a process that dies
    leave within ``ttl + interval`` seconds, announced by another process; a process that
    was cut off for longer than ``ttl`` joins its members again, without duplicates.

    Args:
        dsn: the PostgreSQL connection string.
        schema: the schema of its tables (a lower-case identifier; created if missing).
        ttl: seconds after a process's last heartbeat before its members are expired.
        interval: seconds between heartbeats (and sweeps); default ``ttl / 3``.
        application_name: the start of its connection's name in ``pg_stat_activity``.

    Raises:
        ValueError, TypeError: a bad argument.
    """

    def __init__(
        self,
        dsn: str = "postgresql://localhost/postgres",
        *,
        schema: str = "sse",
        ttl: float = 15.0,
        interval: float | None = None,
        application_name: str = "sse-channels",
    ) -> None:
        if type(dsn) is not str or not dsn:
            raise TypeError("dsn must be a non-empty str")
        self._sql = PresenceSql(schema)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf:
            raise ValueError(f"ttl must be positive seconds, not {ttl!r}")
        beat = ttl / 3 if interval is None else interval
        if isinstance(beat, bool) or not isinstance(beat, (int, float)) or not 0 < beat < ttl:
            raise ValueError(f"interval must be positive seconds below ttl, not {interval!r}")
        # Commits need not wait for the WAL flush: a change lost in a crash of PostgreSQL
        # is one the heartbeat and the sweep repair (a process registers again, a dead
        # process expires), and waiting would cost a disk flush per join.
        self._link = Link(dsn, application_name, "presence", synchronous_commit=False)
        self._ttl_ms = max(1, round(ttl * 1000))
        self._interval = float(beat)
        #: This process in the tables: its connections are ``<process>:<n>``.
        self.process = secrets.token_hex(6)
        self._announce: Announce | None = None
        self._local: dict[tuple[str, str], tuple[str, str]] = {}
        self._beating: anyio.CancelScope | None = None  # the heartbeat's sleep
        self._stopping = False
        self._stopped: anyio.Event | None = None  # made when the heartbeat starts
        self._lock: anyio.Lock | None = None
        self._beats = 0
        self._expired = 0
        self._registered_again = 0
        self._errors = 0
        self._last_error: str | None = None

    @property
    def expiry(self) -> float:
        """The bound, in seconds, within which a stopped process's members leave."""
        return self._ttl_ms / 1000 + self._interval

    def attach(self, announce: Announce) -> None:
        self._announce = announce

    async def start(self, task_group: TaskGroup) -> None:
        """Create the tables if missing, beat once, and run the heartbeat in ``task_group``.

        Raises:
            psycopg.OperationalError: PostgreSQL cannot be reached.
        """

        async def create(connection: psycopg.AsyncConnection[Any]) -> None:
            async with connection.transaction():
                # One creator at a time: CREATE ... IF NOT EXISTS races with itself.
                await connection.execute("SELECT pg_advisory_xact_lock(7172635)")
                for statement in self._sql.create:
                    await connection.execute(statement)

        await self._run(create)
        await self._beat()
        task_group.start_soon(self._beat_forever)

    async def _run(self, call: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        # One transaction at a time on the shared connection: psycopg serialises
        # statements, not transactions, and the worker and the heartbeat both use it.
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            return await self._link.run(call)

    def _connection(self, connection: str) -> str:
        return f"{self.process}:{connection}"

    async def add(
        self, channel: str, connection: str, member: str, meta: str
    ) -> PresenceChange | None:
        self._local[channel, connection] = (member, meta)
        return await self._add(channel, self._connection(connection), member, meta)

    async def _add(
        self, channel: str, connection: str, member: str, meta: str
    ) -> PresenceChange | None:
        sql = self._sql

        async def run(db: psycopg.AsyncConnection[Any]) -> int:
            params = (channel, connection, member, meta, self.process, self._ttl_ms)
            row = await (await db.execute(sql.add, params)).fetchone()
            return 0 if row is None else int(row[0])

        version = await self._run(run)
        return PresenceChange(channel, member, version, True, meta) if version else None

    async def remove(self, channel: str, connection: str) -> PresenceChange | None:
        self._local.pop((channel, connection), None)
        if not self._local:
            self._local = {}  # a dict never shrinks: after a crowd, let it go
        return await self._remove(channel, self._connection(connection))

    async def _remove(self, channel: str, connection: str) -> PresenceChange | None:
        sql = self._sql

        async def run(db: psycopg.AsyncConnection[Any]) -> tuple[str, int] | None:
            row = await (await db.execute(sql.remove, (channel, connection))).fetchone()
            if row is None or row[0] is None:
                return None
            return str(row[0]), int(row[1])

        result = await self._run(run)
        if result is None or not result[1]:
            return None
        return PresenceChange(channel, result[0], result[1], False)

    async def snapshot(self, channel: str) -> tuple[int, dict[str, tuple[int, list[str]]]]:
        sql = self._sql

        async def run(
            db: psycopg.AsyncConnection[Any],
        ) -> tuple[int, list[tuple[str, str]], list[tuple[str, int]]]:
            async with db.transaction():
                await db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor = await db.execute(sql.snapshot_version, (channel,))
                row = await cursor.fetchone()
                assert row is not None
                connections = await (
                    await db.execute(sql.snapshot_connections, (channel,))
                ).fetchall()
                joined = await (await db.execute(sql.snapshot_members, (channel,))).fetchall()
                return int(row[0]), connections, joined

        version, connections, joined = await self._run(run)
        versions = {str(m): int(v) for m, v in joined}
        members: dict[str, tuple[int, list[str]]] = {}
        for member, meta in connections:
            entry = members.get(member)
            if entry is None:
                entry = members[member] = (versions.get(member, 0), [])
            entry[1].append(meta)
        return version, members

    async def count(self, channel: str) -> int:
        sql = self._sql

        async def run(db: psycopg.AsyncConnection[Any]) -> int:
            row = await (await db.execute(sql.count, (channel,))).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(run)

    async def _beat(self) -> None:
        sql = self._sql

        async def beat(db: psycopg.AsyncConnection[Any]) -> tuple[bool, list[str]]:
            async with db.transaction():
                await db.execute(sql.beat, (self.process, self._ttl_ms))
                swept = await (await db.execute(sql.was_swept, (self.process,))).fetchone()
            dead = await (await db.execute(sql.dead)).fetchall()
            return swept is not None, [str(row[0]) for row in dead if row[0] != self.process]

        swept, dead = await self._run(beat)
        self._beats += 1
        if swept:
            await self._register_again()
        for process in dead:
            await self._sweep(process)

    async def _sweep(self, process: str) -> None:
        sql = self._sql
        rows = await self._run(lambda db: _fetchall(db, sql.connections_of, (process,)))
        for channel, connection in rows:
            change = await self._remove(str(channel), str(connection))
            if change is not None:
                self._expired += 1
                self._tell(change)

        async def unlist(db: psycopg.AsyncConnection[Any]) -> None:
            async with db.transaction():
                # Unlisted only if still expired (it may have come back meanwhile); told
                # either way, so that it registers what was removed again.
                gone = await (await db.execute(sql.unlist, (process,))).fetchone()
                if gone is not None or rows:
                    await db.execute(sql.mark_swept, (process,))
                await db.execute(sql.forget_swept)

        await self._run(unlist)

    async def _register_again(self) -> None:
        """Swept while cut off: add every live connection again (announcing the joins)."""
        for (channel, connection), (member, meta) in list(self._local.items()):
            if (channel, connection) not in self._local:
                continue
            change = await self._add(channel, self._connection(connection), member, meta)
            self._registered_again += 1
            if change is not None:
                self._tell(change)

    def _tell(self, change: PresenceChange) -> None:
        if self._announce is not None:
            self._announce(change)

    async def _beat_forever(self) -> None:
        # Stopping cancels the sleep, never a beat half-way (aclose waits for it): psycopg
        # would try to cancel the statement in the server, be interrupted by the same
        # cancellation, and close the connection with a warning.
        self._stopped = anyio.Event()
        try:
            while True:
                with anyio.CancelScope() as self._beating:
                    await anyio.sleep(self._interval)
                self._beating = None
                if self._stopping:
                    break
                try:
                    await self._beat()
                except Exception as exc:  # unreachable: beat again next time
                    self._errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._stopped.set()

    def statistics(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "connections": len(self._local),
            "heartbeats": self._beats,
            "expired_members": self._expired,
            "registered_again": self._registered_again,
            "errors": self._errors,
            "last_error": self._last_error,
        }

    async def aclose(self, *, clean: bool = True) -> None:
        self._stopping = True
        if self._beating is not None:
            self._beating.cancel()
        try:
            if self._stopped is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await self._stopped.wait()  # a beat under way finishes first
            if clean and not self._local:
                sql = self._sql

                async def unlist(db: psycopg.AsyncConnection[Any]) -> None:
                    await db.execute(sql.drop_process, (self.process,))

                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await self._run(unlist)
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
        finally:
            with anyio.CancelScope(shield=True):
                await self._link.aclose()

    def __repr__(self) -> str:
        return f"<PostgresPresence process={self.process} ttl={self._ttl_ms / 1000}s>"


async def _fetchall(
    db: psycopg.AsyncConnection[Any], statement: str, params: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    return await (await db.execute(statement, params)).fetchall()
