"""RedisBackend: channels shared by many processes and hosts through Redis Streams.

Install with ``pip install "sse-channels[redis]"``. This module is the only one that imports
redis-py, and ``sse_channels.backends`` does not import it: it loads when you ask for it.

What lives in Redis (every key starts with ``prefix``)::

    <prefix>seq          the store-wide counter: the n in every event's ordering key
    <prefix>epoch        "<label>:<start>": a new label whenever the counter starts over
    <prefix>ch:<name>    one stream per channel (name kept exactly); entry ids are "<n>-0"
    <prefix>channels     one entry per channel creation, read only for ``*`` patterns
    <prefix>last         with ``ttl`` only: each channel's newest n (a hash), so that a
                         stream created again after it expired knows what came before
    <prefix>wake:<id>    a per-process doorbell that wakes its reader when it must re-plan

One Lua script per send increments the counter and adds the entry with id ``<n>-0``, so the
ids of all streams share one order (multi-channel resume needs nothing more) and the
public event id is ``<label>-<n>``. Each entry records the previous entry of its
stream: a reader (or a history read) whose next entry points further back than where it
stands knows that trimming removed events in between, and reports a gap instead of a
silent hole. The label changes when Redis loses the counter (a restart without
persistence, a flush, a failover that rolled back): ids of the old label are then unknown,
and their subscribers get the gap signal.

Every process runs one reader task that multiplexes all watched channels in one blocking
``XREAD`` on its own connection, and sends everything else (events, history reads) over a
second connection that concurrent callers share: their requests are written together and
the replies matched in order. Two connections per process, however many subscribers.
redis-py's client is asyncio-only, so this backend runs on asyncio; on trio, starting it
raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import random
import secrets
import string
import threading
import time
from itertools import count as _counter
from typing import TYPE_CHECKING, Any, final

import anyio
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .._event import Event, trusted_event
from .._exceptions import BackendError
from .._pattern import compile_pattern, is_pattern

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from anyio.abc import TaskGroup
    from redis.asyncio.connection import AbstractConnection

    from ._base import Deliver

__all__ = ["RedisBackend"]

_log = logging.getLogger("sse_channels.redis")

_ALPHABET = string.digits + string.ascii_lowercase
#: Ordering keys are ``generation << _SHIFT | n``: a new epoch sorts after every older one.
_SHIFT = 48
_MASK = (1 << _SHIFT) - 1
#: Attempts of one send when the connection drops (a retry never stores it twice).
_SEND_ATTEMPTS = 4
#: Entries read per stream per XREAD.
_READ_COUNT = 1000
#: Seconds the reader waits after a read that found events, before the next one.
_LINGER = 0.001
#: Seconds a request may take before its connection counts as dead.
_IO_TIMEOUT = 10.0
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

# KEYS: epoch, counter, stream, registry, last (with @TTL@ only: each channel's newest n,
# so that a stream re-created after it expired records what came before it). ARGV:
# candidate label, token, retry flag ("1": an earlier attempt may have been stored), the
# header's optional lines, the data, the epoch the sender believes current. Returns n, or
# {epoch, n} when the event began a new epoch, was found by a retry, or the epoch is not
# the one the sender believes current. An entry is one field: its name is the header
# ("<previous n>\n<token>" and the optional lines "\ne<event type>", "\nr<retry>",
# "\ni<custom id>"), its value the data; readers parse two strings per entry. With the
# retry flag, an entry that carries the token (an attempt whose reply was lost) is
# returned instead of storing the event a second time. @MAXLEN@, @TTL@, @WINDOW@ and
# @OFFSET@ (where the channel name starts in the stream key) are filled in per backend.
_PUBLISH = r"""
if ARGV[3] == '1' then
  local epoch = redis.call('GET', KEYS[1])
  if epoch then
    local recent = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', @WINDOW@)
    for _, entry in ipairs(recent) do
      if string.match(entry[2][1], '^%d+\n([^\n]*)') == ARGV[2] then
        return {epoch, tonumber(string.match(entry[1], '^(%d+)'))}
      end
    end
  end
end
local n = redis.call('INCR', KEYS[2])
local epoch = false
if n == 1 then
  -- The counter was missing (the sync script never leaves it at 0): Redis is new, or
  -- lost everything. A new epoch begins with this event.
  epoch = ARGV[1] .. ':0'
  redis.call('SET', KEYS[1], epoch)
end
local id = string.format('%d-0', n)
local prev = 0
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
if last then
  prev = tonumber(string.match(last[1], '^(%d+)'))
  if prev >= n then
    -- left over from before the counter was lost: its entries belong to no epoch now
    redis.call('DEL', KEYS[3])
    prev = 0
    last = nil
  end
end
if (not last) and @TTL@ > 0 then
  -- the stream may have expired: its first entry then says what came before it
  local before = tonumber(redis.call('HGET', KEYS[5], string.sub(KEYS[3], @OFFSET@)) or '0')
  if before < n then
    prev = before
  end
end
local tail = '\n' .. ARGV[2] .. ARGV[4]
local added = redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', @MAXLEN@, id, prev .. tail, ARGV[5])
if type(added) == 'table' and added.err then
  -- an emptied stream that remembers a higher last id
  redis.call('DEL', KEYS[3])
  last = nil
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', @MAXLEN@, id, '0' .. tail, ARGV[5])
end
if @TTL@ > 0 then
  redis.call('PEXPIRE', KEYS[3], @TTL@)
  redis.call('HSET', KEYS[5], string.sub(KEYS[3], @OFFSET@), n)
end
if not last then
  redis.call('XADD', KEYS[4], id, 'c', string.sub(KEYS[3], @OFFSET@))
end
if epoch then
  return {epoch, n}
end
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[6] then
  -- another process began a new epoch that this sender has not seen yet
  return {current, n}
end
return n
"""

# KEYS: the stream. ARGV: after ("(<n>-0"), through ("<n>-0"), past through ("(<n>-0").
# Returns {entries in the range, the first entry past it, whether the stream exists, the n
# of the newest entry beyond the newest @MAXLEN@ (0 if none)}: approximate trimming keeps a
# few more than maxlen, but a resume reaches back exactly maxlen events.
_HISTORY = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2])
local following = redis.call('XRANGE', KEYS[1], ARGV[3], '+', 'COUNT', 1)
local cutoff = 0
local excess = redis.call('XLEN', KEYS[1]) - @MAXLEN@
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  cutoff = tonumber(string.match(old[excess][1], '^(%d+)'))
end
return {entries, following, redis.call('EXISTS', KEYS[1]), cutoff}
"""

# KEYS: epoch, counter. ARGV: candidate label, the epoch we use, the highest n we saw in it.
# Returns {epoch, counter}; starts a new epoch (and a counter with it) if either is missing,
# or if the counter went backwards (a failover to a replica that had not received our
# latest events). The publish script likewise starts one when the counter is missing.
_SYNC = """
local raw = redis.call('GET', KEYS[2])
local counter = tonumber(raw or '0')
local epoch = redis.call('GET', KEYS[1])
if (not epoch) or (not raw) or (epoch == ARGV[2] and counter < tonumber(ARGV[3])) then
  epoch = ARGV[1] .. ':' .. string.format('%d', counter)
  redis.call('SET', KEYS[1], epoch)
  -- never 0, so that a send that finds the counter at 1 knows it was missing
  redis.call('SET', KEYS[2], math.max(counter, 1))
end
return {epoch, counter}
"""


def _pack(args: Iterable[bytes]) -> bytes:
    """One command in the Redis protocol (RESP): what redis-py writes, without its layers."""
    parts = [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args]
    return b"*%d\r\n%s" % (len(parts), b"".join(parts))


def _sha1(text: bytes) -> bytes:
    return hashlib.sha1(text).hexdigest().encode()


class _Link:
    """One connection that concurrent callers share.

    Each caller queues a request; whoever finds the link idle writes every queued request
    in one go and reads the replies, which Redis sends in order, then goes on while more
    arrived meanwhile. Concurrent sends thus cost one round trip together, and no pool is
    needed. If the connection fails, every request not yet answered fails with a
    ``ConnectionError`` (its caller may retry), and the next request reconnects.
    """

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        self._pool = pool
        self._connection: AbstractConnection | None = None
        self._queue: list[tuple[bytes, int, asyncio.Future[Any]]] = []
        self._leader: asyncio.Future[Any] | None = None
        self.connected = False

    async def call(self, command: bytes, replies: int = 1) -> Any:
        """Send one packed command (``replies`` replies for a MULTI block); its reply."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, replies, future))
        if self._leader is None:
            self._leader = future
            try:
                await self._drain()
            finally:
                self._leader = None
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            answered = 0
            # A deadline: one timer per batch (socket timeouts cost a task per send on
            # 3.11, and a cancel scope several times what the timer does).
            timer = asyncio.get_running_loop().call_later(_IO_TIMEOUT, self._abort)
            try:
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
                    answered += 1
                    if not future.done():
                        if error is not None:
                            future.set_exception(error)
                        else:
                            future.set_result(results[0] if replies == 1 else results)
                self.connected = True
            except BaseException as exc:
                self.connected = False
                await self._drop()
                failure = RedisConnectionError(f"connection lost: {exc!r}")
                for _, _, future in batch[answered:] + self._queue:
                    if future is self._leader and not isinstance(exc, Exception):
                        future.cancel()  # its caller is being cancelled and will not look
                    elif not future.done():
                        future.set_exception(failure)
                self._queue = []
                if not isinstance(exc, Exception):
                    raise
            finally:
                timer.cancel()

    def _abort(self) -> None:
        """The deadline passed: break the connection, so that its pending read fails."""
        writer = getattr(self._connection, "_writer", None)
        if writer is not None:
            writer.transport.abort()

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
        await self._drop()
        self.connected = False


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
        raw = prefix.encode()
        self._prefix = raw
        self._epoch_key = raw + b"epoch"
        self._counter_key = raw + b"seq"
        self._registry_key = raw + b"channels"
        self._last_key = raw + b"last"
        self._instance = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        self._wake_key = raw + b"wake:" + self._instance.encode()
        self._ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        self._poll = float(poll_interval)
        self._max_backoff = float(max_backoff)
        self._name = f"{client_name}:{os.getpid()}"
        self._tokens = _counter(1)
        self._candidate = _new_label()
        self._deliver: Deliver | None = None

        self._publish_lua = (
            _PUBLISH.replace("@MAXLEN@", str(maxlen))
            .replace("@TTL@", str(self._ttl_ms))
            .replace("@WINDOW@", "1000")
            .replace("@OFFSET@", str(len(raw) + len(b"ch:") + 1))
            .encode()
        )
        self._publish_sha = _sha1(self._publish_lua)
        self._sync_lua = _SYNC.encode()
        self._sync_sha = _sha1(self._sync_lua)
        self._history_lua = _HISTORY.replace("@MAXLEN@", str(maxlen)).encode()
        self._history_sha = _sha1(self._history_lua)
        #: Per channel: the constant middle of its publish command (script, keys).
        self._heads: dict[str, bytes] = {}

        # The epoch: ids carry its label; ordering keys carry its generation (local count).
        self._label: str | None = None
        self._generation = 0
        self._base = 0
        self._start_n = 0
        self._labels: dict[int, str] = {}
        self._latest = 0

        # What the reader reads: channel -> the n it has delivered through (this epoch).
        self._positions: dict[str, int] = {}
        self._complete_after: dict[str, int] = {}
        self._explicit: set[str] = set()
        self._stream_keys: dict[str, bytes] = {}
        self._channels_by_key: dict[bytes, str] = {}
        self._patterns: dict[str, Callable[[str], bool]] = {}
        #: Pattern -> the n it was watched at (channels it finds are read from there).
        self._pattern_starts: dict[str, int] = {}
        self._pending_patterns: set[str] = set()
        self._known: set[str] | None = None
        self._registry_position = 0
        self._wake_id = b"0-0"
        self._wake_needed: anyio.Event | None = None

        self._link: _Link | None = None
        self._sync_client: redis.Redis | None = None
        self._sync_lock = threading.Lock()
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None
        self._reading = False
        self._closed = False

        self._reader_connected = False
        self._reconnects = 0
        self._last_error: str | None = None
        self._events_read = 0
        self._gaps = 0
        self._last_sync = -math.inf
        self._lost_connection_at: float | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def attach(self, deliver: Deliver) -> None:
        self._deliver = deliver

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
            link = _Link(self._pool("send"))
            try:
                reply = await self._run_script(link.call, self._sync_command(), self._sync_lua)
            except RedisError as exc:
                await link.aclose()
                raise BackendError(f"cannot reach Redis at {self._url}: {exc}") from exc
            self._link = link
            self._adopt(reply[0], int(reply[1]))
            self._last_sync = time.monotonic()
        if task_group is not None and not self._reading:
            self._reading = True
            await task_group.start(self._run)

    def _pool(self, role: str) -> redis.asyncio.ConnectionPool:
        # Used only to make connections from the URL. No automatic retries (a retried send
        # could store its event twice; publish() retries in a way that cannot), and no
        # socket timeout (the callers set deadlines).
        return redis.asyncio.ConnectionPool.from_url(
            self._url,
            client_name=f"{self._name}:{role}",
            socket_timeout=None,
            socket_connect_timeout=5.0,
            retry=AsyncRetry(NoBackoff(), 0),
        )

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
                    group.start_soon(self._ring_forever)
                    # Started once the reader's first connection attempt is over, so that
                    # ``async with store`` returns with the reader connected (normally).
                    await group.start(self._read_forever)
                    task_status.started()
        finally:
            self._reading = False
            self._reader_connected = False
            self._stopped.set()

    @staticmethod
    async def _run_script(call: Callable[[bytes], Any], command: bytes, lua: bytes) -> Any:
        """Run EVALSHA ``command``, loading the script first if Redis does not have it."""
        try:
            return await call(command)
        except NoScriptError:  # a new or restarted Redis: not run, so safe to repeat
            await call(_pack((b"SCRIPT", b"LOAD", lua)))
            return await call(command)

    # -- ids ---------------------------------------------------------------------------

    def format_id(self, key: int) -> str:
        label = self._labels.get(key >> _SHIFT, "0")
        return f"{label}-{key & _MASK}"

    def parse_id(self, event_id: str) -> int | None:
        label, _, digits = event_id.partition("-")
        if label != self._label or not (digits.isascii() and digits.isdigit()):
            return None
        n = int(digits)
        if n < self._start_n or n > _MASK:
            return None
        return self._base + n

    def latest_key(self) -> int:
        return self._latest

    def _latest_n(self) -> int:
        return self._latest - self._base if self._label is not None else 0

    def _adopt(self, epoch: bytes | str, counter: int) -> None:
        """Take on the epoch Redis reports; a new one means Redis lost what it had."""
        text = epoch.decode() if isinstance(epoch, bytes) else epoch
        label, _, start = text.partition(":")
        if label == self._label:
            if self._base + counter > self._latest:
                self._latest = self._base + counter
            return
        if label == self._candidate:  # we proposed it: never propose it again
            self._candidate = _new_label()
        first = self._label is None
        self._generation += 1
        self._base = self._generation << _SHIFT
        self._label = label
        self._labels[self._generation] = label
        self._start_n = int(start) if start.isdigit() else 0
        self._latest = self._base + max(counter, self._start_n)
        self._registry_position = self._start_n
        if first:
            return
        # What we had not read yet is gone: every watched channel gets a gap signal, then
        # goes on with everything of the new epoch.
        _log.warning("Redis lost its event log (new epoch %s); subscribers get a gap", label)
        for pattern in self._pattern_starts:
            self._pattern_starts[pattern] = self._start_n
        if self._patterns:
            self._known = None  # the registry is new as well: read it again
            self._pending_patterns = set(self._patterns)
        gap_key = self._base + self._start_n
        for channel in list(self._positions):
            self._positions[channel] = self._start_n
            self._complete_after[channel] = self._start_n
            self._gap(channel, gap_key)
        # A send may have found the new epoch while the reader blocks with the old
        # positions: wake it, or the new events wait for the end of its XREAD.
        self._ring()

    def _sync_command(self) -> bytes:
        args = (self._candidate.encode(), self._current_epoch().encode(), b"%d" % self._latest_n())
        return _pack((b"EVALSHA", self._sync_sha, b"2", self._epoch_key, self._counter_key, *args))

    def _current_epoch(self) -> str:
        return f"{self._label}:{self._start_n}" if self._label is not None else ""

    # -- sending -----------------------------------------------------------------------

    @staticmethod
    def _fields(event: Event) -> list[bytes]:
        """The header's optional lines, and the data."""
        extra = b""
        if event.event is not None:
            extra += b"\ne" + event.event.encode()
        if event.retry is not None:
            extra += b"\nr%d" % event.retry
        if event.id is not None:
            extra += b"\ni" + event.id.encode()
        return [extra, event.data.encode()]

    def _publish_command(
        self, channel: str, fields: list[bytes], token: bytes, retry: bool
    ) -> bytes:
        head = self._heads.get(channel)
        if head is None:
            stream = self._stream_key(channel)
            keys = (self._epoch_key, self._counter_key, stream, self._registry_key, self._last_key)
            head = _pack((b"EVALSHA", self._publish_sha, b"5", *keys))[4:]
            if len(self._heads) < 10_000:
                self._heads[channel] = head
        args = (
            self._candidate.encode(),
            token,
            b"1" if retry else b"0",
            *fields,
            self._current_epoch().encode(),
        )
        tail = b"".join([b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args])
        return b"*%d\r\n%s%s" % (8 + len(args), head, tail)

    def _token(self) -> bytes:
        return f"{self._instance}.{next(self._tokens)}".encode()

    async def publish(self, channel: str, event: Event) -> Event:
        """Add the event to its channel's stream; the reader then delivers it.

        Raises:
            BackendError: Redis could not be reached within a few retries; the event was
                not stored. A retry after a lost reply never stores the event twice.

        Cancelling it may or may not have stored the event.
        """
        link = self._link
        if link is None:
            raise BackendError("the Redis backend is not started (or closed)")
        fields, token = self._fields(event), self._token()
        attempt = 0
        while True:
            command = self._publish_command(channel, fields, token, attempt > 0)
            try:
                reply = await self._run_script(link.call, command, self._publish_lua)
                break
            except _CONNECTION_ERRORS as exc:
                self._last_error = _describe(exc)
                attempt += 1
                if attempt == _SEND_ATTEMPTS:
                    raise BackendError(f"could not send to Redis: {exc}") from exc
                await anyio.sleep(_backoff(attempt, 0.05, 1.0))
            except RedisError as exc:
                raise BackendError(f"Redis refused the event: {exc}") from exc
        if isinstance(reply, list):  # a new epoch began with this event (or a retry found it)
            n = int(reply[1])
            self._adopt(reply[0], n)
            label = _label_of(reply[0])
        else:
            n = int(reply)
            if self._base + n > self._latest:
                self._latest = self._base + n
            label = self._label or ""
        return _published(channel, event, label, n)

    def publish_sync(self, channel: str, event: Event) -> Event | None:
        """Send from a thread without an event loop (Celery task, WSGI view) on a sync client.

        Raises:
            BackendError: Redis could not be reached within a few retries.
        """
        if self._closed:
            raise BackendError("the Redis backend is closed")
        with self._sync_lock:
            client = self._sync_client
            if client is None:
                client = self._sync_client = redis.Redis.from_url(
                    self._url, client_name=f"{self._name}:sync", retry=Retry(NoBackoff(), 0)
                )
        script = client.register_script(self._publish_lua)
        keys = [
            self._epoch_key,
            self._counter_key,
            self._stream_key(channel),
            self._registry_key,
            self._last_key,
        ]
        fields, token = self._fields(event), self._token()
        attempt = 0
        while True:
            flag = b"1" if attempt else b"0"
            args = [self._candidate.encode(), token, flag, *fields, self._current_epoch().encode()]
            try:
                reply = script(keys=keys, args=args)
                break
            except _CONNECTION_ERRORS as exc:
                attempt += 1
                if attempt == _SEND_ATTEMPTS:
                    raise BackendError(f"could not send to Redis: {exc}") from exc
                time.sleep(_backoff(attempt, 0.05, 1.0))
            except RedisError as exc:
                raise BackendError(f"Redis refused the event: {exc}") from exc
        if isinstance(reply, list):
            return _published(channel, event, _label_of(reply[0]), int(reply[1]))
        # This thread does not follow epochs: read the current one (sends from threads are
        # occasional; a Celery worker never starts the backend).
        label = self._label or _label_of(client.get(self._epoch_key) or b"")
        return _published(channel, event, label, int(reply))

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
        if is_pattern(channel):
            self._watch_pattern(channel)
            return 0
        self._explicit.add(channel)
        if channel not in self._positions:
            self._follow(channel, self._latest - self._base)
            self._ring()
        return self._base + self._complete_after[channel]

    def unwatch(self, channel: str) -> None:
        if is_pattern(channel):
            self._patterns.pop(channel, None)
            self._pattern_starts.pop(channel, None)
            self._pending_patterns.discard(channel)
            for name in list(self._positions):
                if name not in self._explicit and not self._matches(name):
                    self._unfollow(name)
            if not self._patterns:
                self._known = None  # stop following the registry; reload it when needed
            return
        self._explicit.discard(channel)
        if channel in self._positions and not self._matches(channel):
            self._unfollow(channel)

    def _watch_pattern(self, pattern: str) -> None:
        match = self._patterns[pattern] = compile_pattern(pattern)
        start = self._pattern_starts[pattern] = self._latest - self._base
        if self._known is None:
            self._pending_patterns.add(pattern)  # the reader loads the registry first
        else:
            for name in self._known:
                if match(name) and name not in self._positions:
                    self._follow(name, start)
        self._ring()

    def _matches(self, channel: str) -> bool:
        return any(match(channel) for match in self._patterns.values())

    def _follow(self, channel: str, after: int) -> None:
        self._positions[channel] = after
        self._complete_after[channel] = after
        self._channels_by_key[self._stream_key(channel)] = channel

    def _unfollow(self, channel: str) -> None:
        del self._positions[channel]
        del self._complete_after[channel]
        self._channels_by_key.pop(self._stream_key(channel), None)

    def _stream_key(self, channel: str) -> bytes:
        key = self._stream_keys.get(channel)
        if key is None:
            key = self._prefix + b"ch:" + channel.encode()
            if len(self._stream_keys) < 100_000:
                self._stream_keys[channel] = key
        return key

    def _ring(self) -> None:
        if self._wake_needed is not None:
            self._wake_needed.set()

    async def _ring_forever(self) -> None:
        """Wake the reader out of its blocking read when the set of channels changed."""
        ring = _pack((b"XADD", self._wake_key, b"MAXLEN", b"1", b"*", b"w", b"1"))
        ring += _pack((b"PEXPIRE", self._wake_key, b"60000"))
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
                self._last_error = _describe(exc)

    # -- reading -----------------------------------------------------------------------

    async def _read_forever(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        pool = self._pool("read")
        attempt = 0
        first = True
        while True:
            connection = pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.connect()
                await self._sync(connection)
                if self._lost_connection_at is not None:
                    _log.info("Redis reader connected again")
                    self._after_outage(time.monotonic() - self._lost_connection_at)
                    self._lost_connection_at = None
                self._reader_connected = True
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
            except Exception as exc:  # RedisError, OSError, or a malformed entry
                if self._lost_connection_at is None:
                    self._lost_connection_at = time.monotonic()
                if self._reader_connected:  # a connection lost, not a failed attempt
                    self._reconnects += 1
                self._reader_connected = False
                self._last_error = _describe(exc)
                _log.warning("Redis reader lost its connection (%s); retrying", self._last_error)
                if first:
                    first = False
                    task_status.started()
                await anyio.sleep(_backoff(attempt, 0.05, self._max_backoff))
                attempt += 1
            finally:
                with anyio.CancelScope(shield=True):
                    await connection.disconnect()

    async def _ask(self, connection: AbstractConnection, command: bytes) -> Any:
        with anyio.fail_after(self._poll + _IO_TIMEOUT):  # a blocking XREAD takes up to poll
            await connection.send_packed_command(command, check_health=False)
            return await connection.read_response()

    async def _sync(self, connection: AbstractConnection) -> None:
        async def call(command: bytes) -> Any:
            return await self._ask(connection, command)

        reply = await self._run_script(call, self._sync_command(), self._sync_lua)
        self._last_sync = time.monotonic()
        self._adopt(reply[0], int(reply[1]))

    def _after_outage(self, seconds: float) -> None:
        """After a long outage, expired streams may have taken unread events with them."""
        if self._ttl_ms and seconds * 1000 >= self._ttl_ms - self._poll * 1000:
            for channel, position in list(self._positions.items()):
                self._gap(channel, self._base + position)

    async def _load_registry(self, connection: AbstractConnection) -> None:
        generation = self._generation
        known: set[str] = set()
        low = b"-"  # every channel that exists, including those of an earlier epoch
        last = 0
        while True:
            command = _pack((b"XRANGE", self._registry_key, low, b"+", b"COUNT", b"1000"))
            page = await self._ask(connection, command)
            for entry_id, fields in page:
                known.add(fields[1].decode())
                last = _n_of(entry_id)
            if len(page) < 1000:
                break
            low = b"(%d-0" % last
        if generation != self._generation:
            return  # a new epoch while we read: start over
        self._known = known
        self._registry_position = max(last, self._start_n)
        for pattern in self._pending_patterns:
            match = self._patterns[pattern]
            for name in known:
                if match(name) and name not in self._positions:
                    self._follow(name, self._pattern_starts[pattern])
        self._pending_patterns.clear()

    async def _read_once(self, connection: AbstractConnection) -> bool:
        """One XREAD, its entries handed to the store; True if there were any."""
        if self._patterns and self._known is None:
            await self._load_registry(connection)
        generation = self._generation
        keys = [self._wake_key]
        ids = [self._wake_id]
        for channel, position in self._positions.items():
            keys.append(self._stream_key(channel))
            ids.append(b"%d-0" % position)
        if self._patterns:
            keys.append(self._registry_key)
            ids.append(b"%d-0" % self._registry_position)
        block = b"%d" % max(1, round(self._poll * 1000))
        command = (b"XREAD", b"COUNT", b"%d" % _READ_COUNT, b"BLOCK", block, b"STREAMS")
        response = await self._ask(connection, _pack((*command, *keys, *ids)))
        if generation != self._generation or not response:
            return False  # none, or a new epoch arrived meanwhile (positions were reset)
        items = list(response.items() if isinstance(response, dict) else response)
        # A stream whose read stopped at COUNT has more: entries of the other streams past
        # its last one wait for the next read, so that every channel goes out in key order.
        cut = [_n_of(entries[-1][0]) for _, entries in items if len(entries) >= _READ_COUNT]
        limit = min(cut) if cut else _MASK
        batch: list[tuple[int, str, Event | None]] = []
        for stream, entries in items:
            if stream == self._wake_key:
                self._wake_id = entries[-1][0]
            elif stream == self._registry_key:
                self._registered(entries)
            else:
                self._collect(stream, entries, batch, limit)
        if not batch:
            return False
        batch.sort(key=_first)
        self._events_read += sum(1 for entry in batch if entry[2] is not None)  # not gaps
        base = self._base
        latest = base + batch[-1][0]
        if latest > self._latest:
            self._latest = latest
        for n, channel, event in batch:
            if event is None:
                self._gap(channel, base + n)
            else:
                self._hand_over(channel, base + n, event)
        return True

    def _registered(self, entries: list[Any]) -> None:
        known = self._known
        for entry_id, fields in entries:
            n = _n_of(entry_id)
            self._registry_position = n
            name = fields[1].decode()
            if known is not None:
                known.add(name)
            if name in self._positions:
                continue
            starts = [s for p, s in self._pattern_starts.items() if self._patterns[p](name)]
            if starts:
                # From its first event, unless it was (re)created before the pattern came.
                self._follow(name, max(n - 1, min(starts)))

    def _collect(
        self,
        stream: bytes,
        entries: list[Any],
        batch: list[tuple[int, str, Event | None]],
        limit: int,
    ) -> None:
        channel = self._channels_by_key.get(stream)
        if channel is None or channel not in self._positions:
            return  # unwatched while the read was under way
        position = self._positions[channel]
        label = self._label
        for entry_id, (header, data) in entries:
            n = _n_of(entry_id)
            if n <= position:
                continue
            if n > limit:
                break
            previous, _, extra = header.partition(b"\n")
            if int(previous) > position:
                # Trimmed before we read it: the events after ``position`` up to the
                # previous entry are gone. Say so, then go on.
                batch.append((int(previous), channel, None))
            batch.append((n, channel, _event(channel, label, n, extra, data)))
            position = n
        self._positions[channel] = position

    def _gap(self, channel: str, key: int) -> None:
        self._gaps += 1
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
        none): trimmed, or beyond the newest ``maxlen``. ``None`` when it cannot tell (the
        stream expired, another epoch, Redis unreachable): the subscriber then gets a gap.
        """
        link = self._link
        base, generation, label = self._base, self._generation, self._label
        if link is None or after < base + self._start_n:
            return None
        if through <= after:
            return after, []
        low, high = after - base, through - base
        args = (b"(%d-0" % low, b"%d-0" % high, b"(%d-0" % high)
        command = _pack((b"EVALSHA", self._history_sha, b"1", self._stream_key(channel), *args))
        try:
            reply = await self._run_script(link.call, command, self._history_lua)
        except RedisError as exc:
            self._last_error = _describe(exc)
            return None
        if generation != self._generation:
            return None
        entries, following, exists, cutoff = reply
        gone = low
        first = entries[0] if entries else following[0] if following else None
        if first is not None:
            previous = int(first[1][0].partition(b"\n")[0])
            if previous > low:
                gone = previous  # trimmed: the entries up to ``previous`` are gone
        elif not exists and self._ttl_ms:
            return None  # the stream expired: there may have been events
        gone = min(max(gone, int(cutoff)), high)
        events = []
        for entry_id, (header, data) in entries:
            n = _n_of(entry_id)
            if n > gone:
                extra = header.partition(b"\n")[2]
                events.append((base + n, _event(channel, label, n, extra, data)))
        return base + gone, events

    # -- health ------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        """``connected``, ``reconnects`` and ``last_error`` for a readiness probe, and more.

        ``connected`` is the reader's connection while the reader runs, else the sending
        connection's last outcome.
        """
        link = self._link
        if self._reading:
            connected = self._reader_connected
        else:
            connected = link is not None and link.connected
        return {
            "backend": "redis",
            "connected": connected,
            "reconnects": self._reconnects,
            "last_error": self._last_error,
            "epoch": self._label,
            "reading": self._reading,
            "streams": len(self._positions),
            "patterns": len(self._patterns),
            "events_read": self._events_read,
            "gaps": self._gaps,
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else "reading" if self._reading else "idle"
        return f"<RedisBackend {self._prefix.decode()!r} {state}>"


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "RedisBackend runs on asyncio only (redis-py has no trio support); "
            "use anyio's asyncio backend, or MemoryBackend on trio"
        ) from None


def _new_label() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(6))


def _label_of(epoch: bytes | str) -> str:
    text = epoch.decode() if isinstance(epoch, bytes) else epoch
    return text.partition(":")[0]


def _published(channel: str, event: Event, label: str, n: int) -> Event:
    return event if event.id is not None else event.with_id(f"{label}-{n}")


def _n_of(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[0])


def _first(item: tuple[int, str, Event | None]) -> int:
    return item[0]


def _event(channel: str, label: str | None, n: int, extra: bytes, data: bytes) -> Event:
    """The event an entry holds; ``extra`` is its header after the previous n."""
    event_type = event_id = None
    retry = None
    if b"\n" in extra:  # after the token: event type, retry, custom id, each on its line
        for line in extra.split(b"\n")[1:]:
            kind, value = line[:1], line[1:].decode()
            if kind == b"e":
                event_type = value
            elif kind == b"r":
                retry = int(value)
            elif kind == b"i":
                event_id = value
    if event_id is None:
        event_id = f"{label}-{n}"
    # The fields were validated when the event was sent; it is encoded once, here.
    return trusted_event(data.decode(), event_type, event_id, retry, channel)


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (spreads many reconnecting processes out)."""
    return random.uniform(base / 2, min(cap, base * 2**attempt))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
