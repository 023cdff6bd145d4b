"""RedisBackend: the Backend Protocol on Redis Streams, composed of the package's parts.

This module owns the lifecycle (the link, the reader and the doorbell task, the sync
client for threads), sending, watching, history reads and ``statistics()``. What it
composes, each in its own module: the keys (``_keys``), the scripts (``_scripts``), the
connections (``_link``), the epoch and id format (``_epoch``), the entry format
(``_entry``), the read plan (``_plan``), the retry rule (``_retry``) and the counters
(``_health``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import threading
import time
from itertools import count
from typing import TYPE_CHECKING, Any, final

import anyio
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ..._exceptions import BackendError
from ..._pattern import is_pattern
from . import _entry, _scripts
from ._epoch import Epoch, event_id, label_of
from ._health import Health
from ._keys import Keys
from ._link import IO_TIMEOUT, Link, ask, open_pool, redact
from ._plan import ReadPlan
from ._resp import pack
from ._retry import SendRetry, backoff

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from redis.asyncio.connection import AbstractConnection

    from ..._event import Event
    from ..._observe import BackendObserver
    from .._base import Deliver

__all__ = ["RedisBackend"]

_log = logging.getLogger("sse_channels.backends.redis")

#: Seconds the reader waits after a read that found events, before the next one.
_LINGER = 0.001
#: Registry entries read per request when the registry is read in full.
_REGISTRY_PAGE = 1000


@final
class RedisBackend:
    """Carries a store's channels through Redis so that many processes share them.

    Use one per process, give it to the store, and run the store in your app's lifespan
    so that the reader task has an owner::

        store = ChannelStore(backend=RedisBackend("redis://localhost:6379/0"))

        async def lifespan(app):
            async with store:  # starts the reader; leaving stops it
                yield

    Ids look like ``a7k2qz-1042``. Events sent from any process reach the subscribers of
    every process, in the order of their ids, once. A client may resume on any server.

    Args:
        url: the Redis URL (``redis://``, ``rediss://``, ``unix://``).
        prefix: start of every key; keep stores apart with different prefixes. With Redis
            Cluster, put a hash tag in it (``"{sse}:"``) so that all keys share one slot.
        maxlen: events a resume reaches back per channel (Redis trims approximately, in
            whole blocks, so its streams keep a little more). Make it at least the store's
            ``history``, so that a client resuming on another server finds what it
            missed, and give every process that shares ``prefix`` the same value.
        ttl: delete a channel's stream this many seconds after its last event (``None``:
            keep it). Resuming from before an expired stream gives a gap signal, and so
            does a reader outage longer than ``ttl``. Must exceed ``poll_interval``; think
            minutes or hours, longer than clients stay away.
        poll_interval: longest time, in seconds, the reader blocks in one ``XREAD``; also
            how often it refreshes the counter and checks the epoch. A subscriber without
            a last event id, on a process that was not reading its channel yet, may also
            get events sent up to this long before it subscribed.
        max_backoff: longest wait, in seconds, between reconnection attempts.
        client_name: shown by ``CLIENT LIST`` as ``<client_name>:<pid>:<role>``.

    Raises:
        ValueError, TypeError: a bad argument.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "sse:",
        maxlen: int = 1000,
        ttl: float | None = None,
        poll_interval: float = 0.5,
        max_backoff: float = 5.0,
        client_name: str = "sse-channels",
    ) -> None:
        if type(url) is not str or not url:
            raise TypeError("url must be a non-empty str")
        if type(prefix) is not str:
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        if type(maxlen) is not int or maxlen < 1:
            raise ValueError(f"maxlen must be an int of at least 1, not {maxlen!r}")
        if ttl is not None and not (isinstance(ttl, (int, float)) and ttl > 0):
            raise ValueError(f"ttl must be positive seconds or None, not {ttl!r}")
        for name, value in (("poll_interval", poll_interval), ("max_backoff", max_backoff)):
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be positive seconds, not {value!r}")
        if ttl is not None and ttl <= poll_interval:
            raise ValueError(
                f"ttl ({ttl!r} s) must be longer than poll_interval ({poll_interval!r} s): "
                "events must not expire before a reader can see them"
            )
        if type(client_name) is not str or not client_name.isprintable() or " " in client_name:
            raise ValueError(f"client_name must be printable with no spaces: {client_name!r}")
        self._url = url
        self._instance = secrets.token_hex(5)
        self._keys = Keys(prefix.encode(), self._instance)
        self._ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        self._scripts = _scripts.Scripts(self._keys, maxlen=maxlen, ttl_ms=self._ttl_ms)
        self._poll = float(poll_interval)
        self._max_backoff = float(max_backoff)
        self._name = f"{client_name}:{os.getpid()}"
        self._tokens = count(1)
        self._deliver: Deliver | None = None

        self._epoch = Epoch()
        self._plan = ReadPlan(self._keys)
        self._health = Health()
        self._wake_needed: anyio.Event | None = None

        self._link: Link | None = None
        self._sync_client: redis.Redis | None = None
        self._sync_lock = threading.Lock()
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None
        self._reading = False
        self._closed = False
        self._last_sync = -math.inf
        self._lost_connection_at: float | None = None
        self._observer: BackendObserver | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def attach(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def observe(self, observer: BackendObserver) -> None:
        """Report reconnects and errors to ``observer`` (the store's metrics call this)."""
        self._observer = observer
        self._health.on_error = lambda exc: observer.backend_error("redis", exc)

    async def start(self, task_group: TaskGroup | None = None) -> None:
        """Connect, and with a task group start the reader in it (idempotent).

        Without a task group (a store used without ``async with``) the backend can send
        but not deliver: subscribing raises ``RuntimeError``.

        Raises:
            RuntimeError: not running on asyncio (redis-py has no trio support).
            BackendError: Redis cannot be reached.
        """
        _require_asyncio()
        if self._closed:
            raise BackendError("the Redis backend is closed")
        if self._link is None:
            link = Link(open_pool(self._url, f"{self._name}:send"))
            try:
                reply = await _scripts.run(link.call, self._sync_command(), self._scripts.sync)
            except RedisError as exc:
                await link.aclose()
                raise BackendError(f"cannot reach Redis at {redact(self._url)}: {exc}") from exc
            self._link = link
            self._adopt(reply[0], int(reply[1]))
            self._last_sync = time.monotonic()
        if task_group is not None and not self._reading:
            self._reading = True
            await task_group.start(self._run)

    async def aclose(self) -> None:
        """Stop the reader and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
            if self._stopped is not None:
                await self._stopped.wait()
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()
        with self._sync_lock:
            sync_client, self._sync_client = self._sync_client, None
        if sync_client is not None:
            sync_client.close()

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                self._wake_needed = anyio.Event()
                async with anyio.create_task_group() as group:
                    if self._link is not None:
                        group.start_soon(self._link.guard)
                    group.start_soon(self._ring_forever)
                    # Started once the reader's first connection attempt is over, so that
                    # ``async with store`` returns with the reader connected (normally).
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

    def _adopt(self, epoch: bytes | str, counter: int) -> None:
        """Take on the epoch Redis reports; a new one means Redis lost what it had."""
        if not self._epoch.adopt(epoch, counter):
            return
        # What we had not read yet is gone: every watched channel gets a gap signal, then
        # goes on with everything of the new epoch.
        label, start_n = self._epoch.label, self._epoch.start_n
        _log.warning("Redis lost its event log (new epoch %s); subscribers get a gap", label)
        gap_key = self._epoch.base + start_n
        for channel in self._plan.restart(start_n):
            self._gap(channel, gap_key)
        # A send may have found the new epoch while the reader blocks with the old
        # positions: wake it, or the new events wait for the end of its XREAD.
        self._ring()

    def _sync_command(self) -> bytes:
        epoch = self._epoch
        return self._scripts.sync_command(epoch.candidate, epoch.current(), epoch.latest_n())

    # -- sending -----------------------------------------------------------------------

    def _token(self) -> bytes:
        return f"{self._instance}.{next(self._tokens)}".encode()

    async def publish(self, channel: str, event: Event) -> Event:
        """Add the event to its channel's stream; the reader then delivers it.

        Raises:
            BackendError: Redis could not be reached within a few retries, or refused the
                event; the event was not stored. A retry after a lost reply never stores
                the event twice.

        Cancelling it may or may not have stored the event.
        """
        link = self._link
        if link is None:
            raise BackendError("the Redis backend is not started (or closed)")
        fields, token = _entry.encode(event), self._token()
        scripts, epoch = self._scripts, self._epoch
        retry = SendRetry(self._health)
        while True:
            command = scripts.publish_command(
                channel, fields, token, retry.retrying, epoch.candidate, epoch.current()
            )
            try:
                reply = await _scripts.run(link.call, command, scripts.publish)
                break
            except (RedisError, OSError) as exc:
                await anyio.sleep(retry.failed(exc))
        if isinstance(reply, list):  # a new epoch began with this event (or a retry found it)
            n = int(reply[1])
            self._adopt(reply[0], n)
            label = label_of(reply[0])
        else:
            n = int(reply)
            epoch.saw(n)
            label = epoch.label or ""
        return _published(event, label, n)

    def publish_sync(self, channel: str, event: Event) -> Event | None:
        """Send from a thread without an event loop (Celery task, WSGI view) on a sync client.

        Raises:
            BackendError: Redis could not be reached within a few retries, or refused the
                event.
        """
        if self._closed:
            raise BackendError("the Redis backend is closed")
        with self._sync_lock:
            client = self._sync_client
            if client is None:
                client = self._sync_client = redis.Redis.from_url(
                    self._url,
                    client_name=f"{self._name}:sync",
                    retry=Retry(NoBackoff(), 0),
                    socket_timeout=IO_TIMEOUT,
                    socket_connect_timeout=5.0,
                )
        scripts, epoch = self._scripts, self._epoch
        script = client.register_script(scripts.publish.lua)
        keys = scripts.publish_keys(channel)
        fields, token = _entry.encode(event), self._token()
        retry = SendRetry(self._health)
        while True:
            args = scripts.publish_args(
                fields, token, retry.retrying, epoch.candidate, epoch.current()
            )
            try:
                reply = script(keys=keys, args=args)
                break
            except (RedisError, OSError) as exc:
                time.sleep(retry.failed(exc))
        if isinstance(reply, list):
            return _published(event, label_of(reply[0]), int(reply[1]))
        # This thread does not follow epochs: read the current one (sends from threads are
        # occasional; a Celery worker never starts the backend).
        label = epoch.label
        if label is None:
            try:
                label = label_of(client.get(self._keys.epoch) or b"")
            except (RedisError, OSError) as exc:
                self._health.failed(exc)
                raise BackendError(f"could not read the epoch from Redis: {exc}") from exc
        return _published(event, label, int(reply))

    # -- watching ----------------------------------------------------------------------

    def watch(self, channel: str) -> int:
        """Deliver ``channel`` (or every channel matching a ``*`` pattern) to this process.

        Raises:
            RuntimeError: the reader is not running (use the store as ``async with store``).
        """
        if not self._reading or self._closed:
            raise RuntimeError(
                "RedisBackend delivers events only while its reader runs: enter the store "
                "first (`async with store:` in your app's lifespan)"
            )
        epoch = self._epoch
        if is_pattern(channel):
            self._plan.watch_pattern(channel, epoch.latest_n())
            self._ring()
            return 0
        complete_after, new = self._plan.watch(channel, epoch.latest_n())
        if new:
            self._ring()
        return epoch.base + complete_after

    def unwatch(self, channel: str) -> None:
        if is_pattern(channel):
            self._plan.unwatch_pattern(channel)
        else:
            self._plan.unwatch(channel)

    def _ring(self) -> None:
        if self._wake_needed is not None:
            self._wake_needed.set()

    async def _ring_forever(self) -> None:
        """Wake the reader out of its blocking read when the set of channels changed."""
        wake = self._keys.wake
        ring = pack((b"XADD", wake, b"MAXLEN", b"1", b"*", b"w", b"1"))
        ring += pack((b"PEXPIRE", wake, b"60000"))
        while True:
            assert self._wake_needed is not None
            await self._wake_needed.wait()
            self._wake_needed = anyio.Event()
            link = self._link
            if link is None:
                continue
            try:
                await link.call(ring, replies=2)
            except RedisError as exc:
                # The reader is reconnecting, or will notice within poll_interval anyway.
                self._health.failed(exc)

    # -- reading -----------------------------------------------------------------------

    async def _read_forever(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        pool = open_pool(self._url, f"{self._name}:read")
        health = self._health
        attempt = 0
        first = True
        while True:
            connection = pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.connect()
                await self._sync(connection)
                if self._lost_connection_at is not None:
                    outage = time.monotonic() - self._lost_connection_at
                    _log.warning("Redis reader connected again after an outage of %.3f s", outage)
                    if self._observer is not None:
                        self._observer.backend_reconnected("redis", outage)
                    self._after_outage(outage)
                    self._lost_connection_at = None
                health.reader_connected = True
                attempt = 0
                if first:
                    first = False
                    task_status.started()
                while True:
                    if time.monotonic() - self._last_sync >= self._poll:
                        await self._sync(connection)
                    if await self._read_once(connection):
                        # Events are flowing: let the next ones gather for a moment, so that
                        # one XREAD (and one wake-up of each subscriber) carries several.
                        # The first event after a quiet spell is never held back.
                        await anyio.sleep(_LINGER)
            except Exception as exc:  # RedisError, OSError, a reply of the wrong shape
                if health.reader_connected:  # a connection lost, not a failed attempt
                    health.reconnects += 1
                health.reader_connected = False
                health.failed(exc)
                if self._lost_connection_at is None:
                    self._lost_connection_at = time.monotonic()
                    _log.warning(
                        "Redis reader lost its connection (%s); reconnecting", health.last_error
                    )
                else:  # one line per outage at WARNING, not one per attempt
                    _log.debug("Redis reader still cannot connect (%s)", health.last_error)
                if first:
                    first = False
                    task_status.started()
                await anyio.sleep(backoff(attempt, 0.05, self._max_backoff))
                attempt += 1
            finally:
                with anyio.CancelScope(shield=True):
                    await connection.disconnect()

    async def _ask(self, connection: AbstractConnection, command: bytes) -> Any:
        return await ask(connection, command, self._poll + IO_TIMEOUT)  # XREAD blocks ≤ poll

    async def _sync(self, connection: AbstractConnection) -> None:
        async def call(command: bytes) -> Any:
            return await self._ask(connection, command)

        reply = await _scripts.run(call, self._sync_command(), self._scripts.sync)
        self._last_sync = time.monotonic()
        self._adopt(reply[0], int(reply[1]))

    def _after_outage(self, seconds: float) -> None:
        """After a long outage, expired streams may have taken unread events with them."""
        if self._ttl_ms and seconds * 1000 >= self._ttl_ms - self._poll * 1000:
            base = self._epoch.base
            for channel, position in self._plan.positions():
                self._gap(channel, base + position)

    async def _load_registry(self, connection: AbstractConnection) -> None:
        generation = self._epoch.generation
        known: set[str] = set()
        low = b"-"  # every channel that exists, including those of an earlier epoch
        last = 0
        page_size = b"%d" % _REGISTRY_PAGE
        while True:
            command = pack((b"XRANGE", self._keys.registry, low, b"+", b"COUNT", page_size))
            page = await self._ask(connection, command)
            for entry in page:
                n = _entry.n_or_none(entry)
                if n is None:
                    continue
                last = n
                try:
                    known.add(entry[1][1].decode())
                except (TypeError, ValueError, IndexError, AttributeError):
                    continue  # not a registry entry of ours
            if len(page) < _REGISTRY_PAGE:
                break
            low = b"(%d-0" % last
        if generation != self._epoch.generation:
            return  # a new epoch while we read: start over
        self._plan.registry_loaded(known, last, self._epoch.start_n)

    async def _read_once(self, connection: AbstractConnection) -> bool:
        """One XREAD, its entries handed to the store; True if there were any."""
        plan, epoch = self._plan, self._epoch
        if plan.needs_registry:
            await self._load_registry(connection)
        generation = epoch.generation
        block = max(1, round(self._poll * 1000))
        response = await self._ask(connection, plan.command(block))
        if generation != epoch.generation or not response:
            return False  # none, or a new epoch arrived meanwhile (positions were reset)
        batch = plan.take(response, epoch.label, self._malformed)
        if not batch:
            return False
        self._health.events_read += sum(1 for entry in batch if entry[2] is not None)
        base = epoch.base
        epoch.saw(batch[-1][0])
        for n, channel, event in batch:
            if event is None:
                self._gap(channel, base + n)
            else:
                self._hand_over(channel, base + n, event)
        return True

    def _malformed(self, error: _entry.MalformedEntry) -> None:
        self._health.failed(error)
        _log.warning("skipped an entry the backend cannot read: %s", error)

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

    # -- history -----------------------------------------------------------------------

    async def history(
        self, channel: str, after: int, through: int
    ) -> tuple[int, list[tuple[int, Event]]] | None:
        """``(gone, events)``: what ``channel``'s stream retains with ``after < key <= through``.

        ``gone`` is the highest key of the range that is no longer retained (``after`` if
        none): trimmed, beyond the newest ``maxlen``, or an entry it cannot read. ``None``
        when it cannot tell (the stream expired, another epoch, Redis unreachable): the
        subscriber then gets a gap.
        """
        link, epoch = self._link, self._epoch
        base, generation, label = epoch.base, epoch.generation, epoch.label
        if link is None or after < base + epoch.start_n:
            return None
        if through <= after:
            return after, []
        low, high = after - base, through - base
        command = self._scripts.history_command(channel, low, high)
        try:
            reply = await _scripts.run(link.call, command, self._scripts.history)
        except RedisError as exc:
            self._health.failed(exc)
            return None
        if generation != epoch.generation:
            return None
        entries, following, exists, cutoff = reply
        gone = low
        first = entries[0] if entries else following[0] if following else None
        if first is not None:
            try:
                previous = _entry.previous_of(first[1][0])
            except (TypeError, ValueError, IndexError):
                previous = _entry.n_or_none(first) or low  # unreadable: counts as gone
            if previous > low:
                gone = previous  # trimmed: the entries up to ``previous`` are gone
        elif not exists and self._ttl_ms:
            return None  # the stream expired: there may have been events
        gone = min(max(gone, int(cutoff)), high)
        events: list[tuple[int, Event]] = []
        for entry in entries:
            try:
                n, _, event = _entry.decode(channel, label, entry)
            except _entry.MalformedEntry as exc:
                self._malformed(exc)
                # What came before it cannot be handed out as complete: a gap up to it.
                found = _entry.n_or_none(entry)
                if found is not None and found > gone:
                    gone = min(found, high)
                    events.clear()
                continue
            if n > gone:
                events.append((base + n, event))
        return base + gone, events

    # -- health ------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        """``connected``, ``reconnects`` and ``last_error`` for a readiness probe, and more.

        ``connected`` is the reader's connection while the reader runs, else the sending
        connection's last outcome.
        """
        link, health = self._link, self._health
        if self._reading:
            connected = health.reader_connected
        else:
            connected = link is not None and link.connected
        return {
            "backend": "redis",
            "connected": connected,
            "reconnects": health.reconnects,
            "last_error": health.last_error,
            "epoch": self._epoch.label,
            "reading": self._reading,
            "streams": self._plan.streams,
            "patterns": self._plan.patterns,
            "events_read": health.events_read,
            "gaps": health.gaps,
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else "reading" if self._reading else "idle"
        return f"<RedisBackend {self._keys.prefix.decode()!r} {state}>"


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "RedisBackend runs on asyncio only (redis-py has no trio support); "
            "use anyio's asyncio backend, or MemoryBackend on trio"
        ) from None


def _published(event: Event, label: str, n: int) -> Event:
    return event if event.id is not None else event.with_id(event_id(label, n))
