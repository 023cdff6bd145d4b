"""Presence: who is online in a channel, with join and leave, on any presence backend.

``Presence`` is the front: it validates members at the call, keeps this process's
connections, applies joins and leaves to a ``PresenceBackend`` in order (one worker task),
and announces each change on the companion channel ``presence:<channel>`` of its store.
``MemoryPresence`` is the reference backend (one process); ``RedisPresence``
(``sse_channels.backends.redis``) and ``PostgresPresence``
(``sse_channels.backends.postgres``) share one view between processes. ``PresenceView``
rebuilds a member list from what a subscriber of ``presence:<channel>`` receives.

The events on ``presence:<channel>`` (JSON data):

- ``snapshot``: ``{"v": V, "members": {member: {"v": v, "metas": [meta, ...]}}}``, first
  for every new subscriber, and in place of any gap (the store's snapshot channels);
- ``join``: ``{"member": m, "v": v, "meta": meta}``, when a member's first connection
  arrives; ``leave``: ``{"member": m, "v": v}``, when its last one goes;
- ``diff``: ``{"joins": [join, ...], "leaves": [leave, ...]}``, several changes of the
  channel found together (a connect storm), each entry the data of a ``join`` or ``leave``
  event; a reader applies each as if it came alone (the order within does not matter);
- in a counts-only channel, only ``count``: ``{"count": n}``, a state channel value.

Every change has a version ``v`` that grows per channel, and a snapshot's ``V`` covers every
change up to it, so a reader applies changes last-writer-wins per member: the order in
which changes from several processes reach the stream does not matter, and a change that
comes twice (a resume from a snapshot's id) changes nothing.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from itertools import count as counter
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, final, runtime_checkable

import anyio

from ._exceptions import SSEChannelsError, StoreClosedError

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup
    from typing_extensions import Self

    from ._store import ChannelStore

__all__ = [
    "MAX_MEMBER_LENGTH",
    "PRESENCE_PREFIX",
    "InvalidMemberError",
    "MemoryPresence",
    "MetadataTooLargeError",
    "Presence",
    "PresenceBackend",
    "PresenceChange",
    "PresenceSession",
    "PresenceView",
]

#: Announcements of ``channel`` go to ``PRESENCE_PREFIX + channel``.
PRESENCE_PREFIX = "presence:"
#: The longest member id, in characters.
MAX_MEMBER_LENGTH = 128


class InvalidMemberError(SSEChannelsError, ValueError):
    """A member id is not a printable, non-empty ``str`` of at most 128 characters."""


class MetadataTooLargeError(SSEChannelsError, ValueError):
    """A member's metadata is larger, as compact JSON, than the presence allows."""


def check_member(member: object) -> str:
    """``member`` if it is a valid member id; else a typed error."""
    if type(member) is not str:
        raise TypeError(f"a member id must be str, not {type(member).__name__}")
    if not member or len(member) > MAX_MEMBER_LENGTH:
        raise InvalidMemberError(
            f"a member id must have 1 to {MAX_MEMBER_LENGTH} characters, not {len(member)}"
        )
    if not member.isprintable() or member != member.strip():
        raise InvalidMemberError(
            f"a member id must be printable, with no space at either end: {member!r}"
        )
    return member


def encode_meta(meta: object, limit: int) -> str:
    """``meta`` as compact JSON text, checked: a JSON object (or ``None``) within ``limit``."""
    if meta is None:
        return "{}"
    if not isinstance(meta, Mapping):
        raise TypeError(f"metadata must be a dict (a JSON object) or None, not {meta!r}")
    try:
        text = json.dumps(meta, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON (str keys, finite numbers): {exc}") from None
    size = len(text.encode())
    if size > limit:
        raise MetadataTooLargeError(
            f"metadata is {size} bytes as JSON; this presence allows at most {limit}"
        )
    return text


@final
class PresenceChange(NamedTuple):
    """A member joined (its first connection) or left (its last) a channel, at version ``v``.

    ``meta`` is the JSON text of the joining connection's metadata (``None`` on a leave).
    An immutable named tuple: a backend makes one per join and leave, so it is cheap.
    """

    channel: str
    member: str
    version: int
    joined: bool
    meta: str | None = None


#: ``PresenceChange`` made without its keyword handling (twice as fast, for the memory backend).
_new_change = tuple.__new__

#: ``announce(change)``: a backend found a change by itself (an expired process's members,
#: a re-registration after an outage); the front announces it.
Announce = Callable[[PresenceChange], None]


@runtime_checkable
class PresenceBackend(Protocol):
    """Where the members of every channel are kept (a Protocol; inherit nothing).

    The rules a ``Presence`` relies on:

    - A *connection* is one ``(channel, connection id)``; its member and metadata never
      change. ``add`` registers it and returns the join if it is its member's first
      connection in the channel (``None`` otherwise, and for a connection already there:
      adding again is harmless). ``remove`` returns the leave if it was the member's last
      (``None`` otherwise, and for an unknown connection).
    - Versions grow per channel with every join and leave, across every process sharing
      the backend; ``snapshot`` returns ``(V, members)`` read at once, where ``V`` is at
      least the version of every change it reflects and ``members`` maps each member to
      ``(v, [meta, ...])``: the version of its join and one metadata text per connection.
    - A networked backend keeps this process alive with a heartbeat, expires the
      connections of processes whose heartbeat stopped (announcing their leaves with
      ``announce``, once, from whichever process finds them), and registers its own live
      connections again (announcing the joins) if it finds that it was expired itself.
    - ``aclose(clean=True)`` removes nothing: the ``Presence`` removes connections first.
      ``clean=False`` (the store closed, so leaves cannot be announced) just stops the
      heartbeat, so that other processes expire and announce them within the bound.
    """

    def attach(self, announce: Announce) -> None:
        """Called once, first, with the callback for changes found by the backend itself."""

    async def start(self, task_group: TaskGroup) -> None:
        """Connect, and start any heartbeat in ``task_group``."""

    async def add(
        self, channel: str, connection: str, member: str, meta: str
    ) -> PresenceChange | None:
        """Register a connection; the join if it is the member's first."""

    async def remove(self, channel: str, connection: str) -> PresenceChange | None:
        """Remove a connection; the leave if it was the member's last."""

    async def snapshot(self, channel: str) -> tuple[int, dict[str, tuple[int, list[str]]]]:
        """``(V, {member: (v, [meta, ...])})``, read at once."""

    async def count(self, channel: str) -> int:
        """How many members (not connections) ``channel`` has now."""

    def statistics(self) -> dict[str, Any]:
        """Counters, merged into ``Presence.statistics()``."""

    async def aclose(self, *, clean: bool = True) -> None:
        """Stop the heartbeat and release connections."""


@final
class MemoryPresence:
    """The reference presence backend: every member in this process's memory.

    Its state is one dict per channel that has members, removed with the channel's last
    connection, so churn leaves nothing behind.
    """

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, dict[str, str]]] = {}  # channel -> member -> conns
        self._owners: dict[str, dict[str, str]] = {}  # channel -> connection -> member
        self._joined: dict[str, dict[str, int]] = {}  # channel -> member -> join version
        self._version = 0

    def attach(self, announce: Announce) -> None:
        pass  # nothing expires in one process

    async def start(self, task_group: TaskGroup) -> None:
        pass

    async def add(
        self, channel: str, connection: str, member: str, meta: str
    ) -> PresenceChange | None:
        return self._add_now(channel, connection, member, meta)

    async def remove(self, channel: str, connection: str) -> PresenceChange | None:
        return self._remove_now(channel, connection)

    def _add_now(
        self, channel: str, connection: str, member: str, meta: str
    ) -> PresenceChange | None:
        """``add`` without awaiting: memory never blocks (the front calls this)."""
        owners = self._owners.get(channel)
        if owners is None:
            owners = self._owners[channel] = {}
            self._channels[channel] = {}
            self._joined[channel] = {}
        elif connection in owners:
            return None
        owners[connection] = member
        members = self._channels[channel]
        connections = members.get(member)
        if connections is not None:
            connections[connection] = meta
            return None
        members[member] = {connection: meta}
        self._version = version = self._version + 1
        self._joined[channel][member] = version
        return _new_change(PresenceChange, (channel, member, version, True, meta))

    def _remove_now(self, channel: str, connection: str) -> PresenceChange | None:
        """``remove`` without awaiting."""
        owners = self._owners.get(channel)
        if owners is None or connection not in owners:
            return None
        member = owners.pop(connection)
        members = self._channels[channel]
        connections = members[member]
        del connections[connection]
        if connections:
            return None
        del members[member]
        del self._joined[channel][member]
        if not members:
            del self._channels[channel], self._joined[channel], self._owners[channel]
        self._version = version = self._version + 1
        return _new_change(PresenceChange, (channel, member, version, False, None))

    async def snapshot(self, channel: str) -> tuple[int, dict[str, tuple[int, list[str]]]]:
        members = self._channels.get(channel, {})
        joined = self._joined.get(channel, {})
        return self._version, {m: (joined[m], list(c.values())) for m, c in members.items()}

    async def count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def statistics(self) -> dict[str, Any]:
        return {
            "channels": len(self._channels),
            "members": sum(len(m) for m in self._channels.values()),
            "connections": sum(len(c) for m in self._channels.values() for c in m.values()),
        }

    async def aclose(self, *, clean: bool = True) -> None:
        pass


#: Joins and leaves the worker applies before announcing what they changed.
_BATCH = 512
#: The most changes, and about the most text, in one ``diff`` event: a store keeps its
#: history in events, so a diff stays small (a few KB; 32 changes amortise the send).
_DIFF_CHANGES = 32
_DIFF_BYTES = 8 * 1024


@final
class PresenceSession:
    """One connection's membership of one or more channels; made by ``Presence.join``.

    ``leave()`` is synchronous and idempotent (safe in ``finally`` and cancelled code);
    ``async with presence.join(...) as session:`` waits until the join is registered, and
    leaves when the block ends however it ends.
    """

    __slots__ = (
        "_done",
        "_left",
        "_meta",
        "_presence",
        "_registered",
        "channels",
        "connection",
        "member",
    )

    def __init__(
        self,
        presence: Presence,
        channels: tuple[str, ...],
        member: str,
        connection: str,
        meta: str,
    ) -> None:
        self._presence = presence
        self.channels = channels
        self.member = member
        self.connection = connection
        self._meta = meta  # the metadata as JSON text, for the backend
        self._left = False
        self._registered = False
        self._done: anyio.Event | None = None  # made only for someone who waits

    @property
    def left(self) -> bool:
        return self._left

    def registered(self) -> None:
        self._registered = True
        if self._done is not None:
            self._done.set()

    async def wait_registered(self) -> None:
        """Wait until the join is registered with the backend (``flush`` waits for its
        announcement too)."""
        if not self._registered:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()

    def leave(self) -> None:
        """Leave every channel of the session now (the backend is told in order)."""
        if not self._left:
            self._left = True
            self._presence.leave(self)

    async def __aenter__(self) -> Self:
        try:
            await self.wait_registered()
        except BaseException:
            self.leave()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()

    def __repr__(self) -> str:
        state = "left" if self._left else "joined"
        return f"<PresenceSession {self.member!r} in {list(self.channels)!r} {state}>"


@final
class Presence:
    """Who is online in each channel of a store: joins, leaves, snapshots, counts.

    A connection joins with ``join(channel, member, meta)`` (usually the SSE stream does,
    with the ``presence=`` stream option). A member with several connections (tabs,
    devices) counts once: it joins with the first and leaves with the last. Changes are
    announced on ``presence:<channel>`` (``join`` and ``leave`` events); a new subscriber
    of that channel gets a ``snapshot`` first, and a resumed one gets a new snapshot
    wherever history cannot cover what it missed (see the module docs and
    [PresenceView][sse_channels.PresenceView]). Run it in the app's lifespan, inside the
    store: ``async with store, presence: ...``.

    Args:
        store: announcements go to its channels; it must outlive the presence.
        backend: where members are kept; default a new ``MemoryPresence`` (one process).
            ``RedisPresence`` and ``PostgresPresence`` share them between processes.
        counts_only: ``True`` (or a ``channel -> bool`` callable) for rooms too big to
            send member lists: their ``presence:<channel>`` is a state channel holding
            ``{"count": n}``, updated at most every ``count_interval`` seconds.
        count_interval: see ``counts_only``.
        max_meta_bytes: the largest metadata, as compact JSON.

    Raises:
        ValueError, TypeError: a bad argument, or the store has a presence already.
    """

    def __init__(
        self,
        store: ChannelStore,
        backend: PresenceBackend | None = None,
        *,
        counts_only: bool | Callable[[str], bool] = False,
        count_interval: float = 1.0,
        max_meta_bytes: int = 1024,
    ) -> None:
        if type(max_meta_bytes) is not int or max_meta_bytes < 2:
            raise ValueError(f"max_meta_bytes must be an int of at least 2, not {max_meta_bytes!r}")
        if not isinstance(count_interval, (int, float)) or not 0 < count_interval < math.inf:
            raise ValueError(f"count_interval must be positive seconds, not {count_interval!r}")
        if not (type(counts_only) is bool or callable(counts_only)):
            raise TypeError("counts_only must be True, False or a callable (channel) -> bool")
        self.store = store
        self.backend: PresenceBackend = backend if backend is not None else MemoryPresence()
        self._counts_only = counts_only
        self._count_interval = float(count_interval)
        self._max_meta = max_meta_bytes
        self._ids = counter(1)
        self._sessions: dict[str, PresenceSession] = {}  # connection -> session
        #: Sessions to add (not registered yet) or to remove (registered), in order.
        self._ops: deque[PresenceSession] = deque()
        self._announcements: deque[PresenceChange] = deque()
        self._sending: list[PresenceChange] = []  # taken from _announcements, not yet sent
        self._rooms: dict[str, tuple[str]] = {}  # name -> (name,), checked (bounded)
        self._wake = anyio.Event()
        self._asleep = False  # the worker waits for _wake
        self._idle: anyio.Event | None = None  # made by flush(), set when the work is done
        self._dirty_counts: set[str] = set()
        self._task_group: TaskGroup | None = None  # while it runs
        self._group: TaskGroup | None = None  # until the block of ``async with`` ends
        self._worker: anyio.CancelScope | None = None
        self._closed = False
        self._errors = 0
        self._last_error: str | None = None
        self._announced = 0
        self._unregister = store.provide_snapshot(PRESENCE_PREFIX + "*", self._snapshot_data)
        self.backend.attach(self._found)

    # -- joining and leaving -----------------------------------------------------------

    def join(
        self, channels: str | tuple[str, ...] | list[str], member: str, meta: Any = None
    ) -> PresenceSession:
        """Join ``channels`` (one name or several) as ``member``, for one connection.

        Returns at once with the session; the backend is told in order, by the presence's
        worker. ``async with presence.join(...)`` waits until the join is registered and
        leaves when the block ends; otherwise call ``session.leave()`` (it never blocks).

        Args:
            channels: the channel or channels (not ``presence:`` ones, nor patterns).
            member: who: a printable ``str`` of 1 to 128 characters, e.g. the user id.
            meta: small JSON metadata for this connection (device, name), a ``dict``.

        Raises:
            InvalidMemberError: a bad member id (``TypeError`` if not a ``str``).
            MetadataTooLargeError: ``meta`` exceeds ``max_meta_bytes`` as JSON.
            ValueError, TypeError: a bad channel, or ``meta`` is not a JSON object.
            StoreClosedError: the presence is closed.
            RuntimeError: the presence is not running (``async with presence``).
        """
        rooms = self._rooms
        if type(channels) is str:
            names: tuple[str, ...] | None = rooms.get(channels)
            if names is None:
                names = self._room(channels)
        elif isinstance(channels, str):
            names = self._room(channels)  # a str subclass: refused with the reason
        else:
            names = tuple(channels)
            if len(names) > 1:
                names = tuple(dict.fromkeys(names))
                for name in names:
                    if name not in rooms:
                        self._room(name)
            elif names:
                names = rooms.get(names[0]) or self._room(names[0])
            else:
                raise ValueError("join() needs at least one channel")
        check_member(member)
        text = "{}" if meta is None else encode_meta(meta, self._max_meta)
        if self._closed:
            raise StoreClosedError("the presence is closed")
        if self._task_group is None:
            raise RuntimeError(
                "the presence is not running: use 'async with presence:' (in the app's lifespan)"
            )
        session = PresenceSession(self, names, member, str(next(self._ids)), text)
        self._sessions[session.connection] = session
        self._ops.append(session)
        if self._asleep:
            self._asleep = False  # woken once, however many join before it runs
            self._wake.set()
        return session

    def _room(self, name: str) -> tuple[str]:
        _check_room(name)
        rooms = self._rooms
        if len(rooms) >= 1024:
            rooms.clear()  # a cache of the names seen, not a registry: keep it small
        names = rooms[name] = (name,)
        return names

    def leave(self, session: PresenceSession) -> None:
        """Leave ``session``'s channels (``session.leave()`` calls this); idempotent."""
        if self._sessions.pop(session.connection, None) is not None:
            if not self._sessions:
                self._sessions = {}  # a dict never shrinks: after a crowd, let it go
            if not self._closed:
                self._ops.append(session)  # registered by then: the worker removes it
                if self._asleep:
                    self._asleep = False
                    self._wake.set()

    async def flush(self) -> None:
        """Wait until every join and leave made so far is registered and announced."""
        while self._ops or self._announcements or self._sending:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    # -- reading -----------------------------------------------------------------------

    async def members(self, channel: str) -> dict[str, list[Any]]:
        """The members of ``channel`` now, each with the metadata of its connections.

        Joins and leaves not yet registered (see ``flush``) are not included.
        """
        _check_room(channel)
        _, members = await self.backend.snapshot(channel)
        return {m: [json.loads(meta) for meta in metas] for m, (_, metas) in members.items()}

    async def count(self, channel: str) -> int:
        """How many members ``channel`` has now (cheap: no list is read)."""
        _check_room(channel)
        return await self.backend.count(channel)

    def counts_only(self, channel: str) -> bool:
        """Whether ``channel`` announces counts only (a big room)."""
        rule = self._counts_only
        return rule if type(rule) is bool else bool(rule(channel))

    def statistics(self) -> dict[str, Any]:
        """This process's sessions and pending work, and the backend's counters."""
        return {
            "sessions": len(self._sessions),
            "pending": len(self._ops) + len(self._announcements) + len(self._sending),
            "announced": self._announced,
            "errors": self._errors,
            "last_error": self._last_error,
            "backend": self.backend.statistics(),
        }

    async def _snapshot_data(self, name: str) -> Any:
        channel = name[len(PRESENCE_PREFIX) :]
        if not channel or self.counts_only(channel):
            return None  # a counts-only channel is a state channel: its value is the count
        version, members = await self.backend.snapshot(channel)
        return _snapshot_json(version, members)

    # -- the worker --------------------------------------------------------------------

    async def _work(self) -> None:
        with anyio.CancelScope() as self._worker:
            await self._work_until_cancelled()

    async def _work_until_cancelled(self) -> None:
        # The worker takes what has queued up since it last ran (a connect storm: many
        # joins) as one batch: it applies up to _BATCH joins and leaves, then announces
        # the changes they made with one event per channel ("diff" for several).
        backoff = 0.05
        while True:
            if self.store.closed:
                # Nothing can be announced any more: removing members silently would leave
                # other processes' lists wrong. They expire instead (see aclose()).
                self._ops.clear()
                self._announcements.clear()
            if self._announcements:
                # Changes the backend made are announced before anything else is applied,
                # and kept until they are: a failed send is tried again, never dropped.
                try:
                    await self._announce_pending()
                except StoreClosedError:
                    continue
                except Exception as exc:
                    backoff = await self._failed(exc, backoff)
                    continue
                backoff = 0.05
                continue
            if not self._ops:
                idle, self._idle = self._idle, None
                if idle is not None:
                    idle.set()
                self._wake = anyio.Event()
                self._asleep = True  # joins and leaves wake it only now
                try:
                    await self._wake.wait()
                finally:
                    self._asleep = False
                continue
            try:
                await self._apply_pending()
            except Exception as exc:  # the backend is unreachable: try again, in order
                backoff = await self._failed(exc, backoff)
                continue
            backoff = 0.05

    async def _failed(self, exc: Exception, backoff: float) -> float:
        self._errors += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        await anyio.sleep(backoff)
        return min(backoff * 2, 2.0)

    async def _apply_pending(self) -> None:
        # Applying again after a failure is harmless: adding a connection that is there,
        # or removing one that is gone, changes nothing and announces nothing. An op
        # leaves the queue only once applied, so a failure retries it, in order.
        # A session comes up twice: to add (it is not registered yet), then to remove.
        ops, backend, found = self._ops, self.backend, self._announcements
        if type(backend) is MemoryPresence:
            self._apply_in_memory(backend)
            return
        for _ in range(min(len(ops), _BATCH)):
            session = ops[0]
            connection = session.connection
            if session._registered:
                for channel in session.channels:
                    change = await backend.remove(channel, connection)
                    if change is not None:
                        found.append(change)
                ops.popleft()
            else:
                for channel in session.channels:
                    change = await backend.add(channel, connection, session.member, session._meta)
                    if change is not None:
                        found.append(change)
                ops.popleft()
                session.registered()

    def _apply_in_memory(self, backend: MemoryPresence) -> None:
        # The same as the loop above without an await per change (the reference backend).
        ops, found = self._ops, self._announcements
        add, remove = backend._add_now, backend._remove_now
        for _ in range(min(len(ops), _BATCH)):
            session = ops.popleft()
            connection = session.connection
            if session._registered:
                for channel in session.channels:
                    change = remove(channel, connection)
                    if change is not None:
                        found.append(change)
            else:
                for channel in session.channels:
                    change = add(channel, connection, session.member, session._meta)
                    if change is not None:
                        found.append(change)
                session.registered()

    def _found(self, change: PresenceChange) -> None:
        """A change the backend found itself (expiry, re-registration): announce it."""
        if not self._closed:
            self._announcements.append(change)
            self._wake.set()

    async def _announce_pending(self) -> None:
        pending = self._announcements
        taken = self._sending = [pending.popleft() for _ in range(min(len(pending), _BATCH))]
        by_channel: dict[str, list[PresenceChange]] = {}
        for change in taken:
            group = by_channel.get(change.channel)
            if group is None:
                by_channel[change.channel] = [change]
            else:
                group.append(change)
        out: set[int] = set()  # the changes sent (by id: they are alive in taken)
        try:
            for channel, changes in by_channel.items():
                if self.counts_only(channel):
                    self._count_soon(channel)
                    out.update(map(id, changes))
                    continue
                name = PRESENCE_PREFIX + channel
                for chunk, event, data in _events_of(changes):
                    await self.store.send(name, data, event=event)
                    self._announced += len(chunk)
                    out.update(map(id, chunk))
        except BaseException:
            # What was not sent goes back first, in order: each change goes out once.
            pending.extendleft(reversed([c for c in taken if id(c) not in out]))
            raise
        finally:
            self._sending = []

    def _count_soon(self, channel: str) -> None:
        group = self._group  # the worker's group: it runs until the presence's block ends
        if channel not in self._dirty_counts and group is not None:
            self._dirty_counts.add(channel)
            group.start_soon(self._send_count, channel)

    async def _send_count(self, channel: str) -> None:
        # At most one count per interval: a room of 100,000 gets a number, not a storm.
        try:
            await anyio.sleep(self._count_interval)
        finally:
            self._dirty_counts.discard(channel)
        try:
            members = await self.backend.count(channel)
            await self.store.set(PRESENCE_PREFIX + channel, {"count": members}, event="count")
            self._announced += 1
        except StoreClosedError:
            pass
        except Exception as exc:
            self._errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Run the worker (and the backend's heartbeat) for the duration of the block.

        Raises:
            StoreClosedError: the presence was closed.
            RuntimeError: it is running already.
        """
        if self._closed:
            raise StoreClosedError("the presence is closed")
        if self._task_group is not None:
            raise RuntimeError("the presence is running already")
        group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await self.backend.start(group)
            group.start_soon(self._work)
        except BaseException:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
            raise
        self._task_group = self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            group, self._group = self._group, None
            if group is not None:
                group.cancel_scope.cancel()
                await group.__aexit__(None, None, None)

    async def aclose(self, *, timeout: float = 5.0) -> None:
        """Leave with every session of this process, announce it, and stop; idempotent.

        If the store is closed already, nothing can be announced: the connections are left
        to expire (a networked backend's other processes announce the leaves within its
        bound). Waits at most ``timeout`` seconds for the backend. Safe to call from any
        task (``close_on_signal`` does); the block of ``async with`` ends the worker's task
        group.
        """
        if self._closed:
            return
        clean = not self.store.closed
        if clean:
            for session in list(self._sessions.values()):
                session.leave()
        self._closed = True
        self._unregister()
        running, self._task_group = self._task_group, None
        try:
            if running is not None:
                if clean:
                    with anyio.move_on_after(timeout, shield=True):
                        await self.flush()
                clean = clean and not (self._ops or self._announcements or self._sending)
                if self._worker is not None:  # not the group: it hosts the caller's block
                    self._worker.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.backend.aclose(clean=clean)

    @property
    def closed(self) -> bool:
        return self._closed


@final
class PresenceView:
    """A member list rebuilt from the events of ``presence:<channel>``, exactly.

    Feed it every event the subscriber receives (``apply``); it keeps, per member, the
    version of the last change applied and ignores an older one, so changes may arrive in
    any order or twice. A ``gap`` needs no handling: the store sends a snapshot in its place.
    """

    __slots__ = ("_base", "_gone", "_versions", "count", "members")

    #: Left members remembered, to ignore a join that arrives after its leave.
    TOMBSTONES = 4096

    def __init__(self) -> None:
        #: member -> metadata of its connections (from the snapshot; the first on a join).
        self.members: dict[str, list[Any]] = {}
        #: The member count (from ``count`` events in a counts-only channel, else ``len``).
        self.count = 0
        self._base = 0
        self._gone: OrderedDict[str, int] = OrderedDict()
        self._versions: dict[str, int] = {}

    def apply(self, event: str | None, data: str) -> bool:
        """Apply one event (type and data text); ``True`` if it was a presence event."""
        if event == "snapshot":
            body = json.loads(data)
            base = int(body["v"])
            fresh = {m: (int(e["v"]), list(e["metas"])) for m, e in body["members"].items()}
            for member, version in list(self._versions.items()):
                if version > base and member not in fresh:  # a change newer than the snapshot
                    continue
                if member not in fresh:
                    del self._versions[member]
                    self.members.pop(member, None)
            for member, (version, metas) in fresh.items():
                # A change newer than the snapshot stands, a join or a leave alike.
                if self._versions.get(member, -1) > base or self._gone.get(member, -1) > base:
                    continue
                self._versions[member] = version
                self.members[member] = metas
            self._base = max(self._base, base)
            for member in [m for m, v in self._gone.items() if v <= base]:
                del self._gone[member]
        elif event == "join" or event == "leave":
            self._change(event == "join", json.loads(data))
        elif event == "diff":
            body = json.loads(data)
            for change in body["joins"]:
                self._change(True, change)
            for change in body["leaves"]:
                self._change(False, change)
        elif event == "count":
            self.count = int(json.loads(data)["count"])
            return True
        else:
            return False
        self.count = len(self.members)
        return True

    def _change(self, joined: bool, body: dict[str, Any]) -> None:
        member, version = body["member"], int(body["v"])
        if version <= self._base or version <= self._versions.get(member, -1):
            return
        if version <= self._gone.get(member, -1):
            return
        if joined:
            self._gone.pop(member, None)
            self._versions[member] = version
            self.members[member] = [body.get("meta", {})]
        else:
            self._versions.pop(member, None)
            self.members.pop(member, None)
            self._gone[member] = version
            self._gone.move_to_end(member)
            while len(self._gone) > self.TOMBSTONES:
                self._gone.popitem(last=False)


def _events_of(
    changes: list[PresenceChange],
) -> Iterator[tuple[list[PresenceChange], str, str]]:
    """``(changes, event type, data)`` of the events that announce ``changes`` (one channel's).

    One change: a ``join`` or a ``leave``. Several: ``diff`` events of at most
    _DIFF_CHANGES changes and about _DIFF_BYTES of text each, in place of one event each.
    """
    if len(changes) == 1:
        (change,) = changes
        yield changes, "join" if change.joined else "leave", _change_json(change)
        return
    start = size = 0
    joins: list[str] = []
    leaves: list[str] = []
    for index, change in enumerate(changes, 1):
        text = _change_json(change)
        (joins if change.joined else leaves).append(text)
        size += len(text)
        if index - start >= _DIFF_CHANGES or size >= _DIFF_BYTES or index == len(changes):
            chunk = changes[start:index]
            if len(chunk) == 1:
                yield chunk, "join" if change.joined else "leave", text
            else:
                yield (
                    chunk,
                    "diff",
                    f'{{"joins":[{",".join(joins)}],"leaves":[{",".join(leaves)}]}}',
                )
            start, size, joins, leaves = index, 0, [], []


def _change_json(change: PresenceChange) -> str:
    """The data of a ``join`` or ``leave`` event (and an entry of a ``diff``)."""
    member = encode_basestring_ascii(change.member)  # json.dumps(member), faster
    if change.joined:
        return f'{{"member":{member},"v":{change.version},"meta":{change.meta}}}'
    return f'{{"member":{member},"v":{change.version}}}'


def _snapshot_json(version: int, members: dict[str, tuple[int, list[str]]]) -> str:
    # Built as text: the metadata is JSON already, and a 10,000-member room is one string.
    parts = [
        f'{json.dumps(m)}:{{"v":{v},"metas":[{",".join(metas)}]}}'
        for m, (v, metas) in members.items()
    ]
    return f'{{"v":{version},"members":{{{",".join(parts)}}}}}'


def _check_room(channel: object) -> None:
    if type(channel) is not str:
        raise TypeError(f"channel name must be str, not {type(channel).__name__}")
    if not channel or "*" in channel or not channel.isprintable():
        raise ValueError(f"a presence channel must be a printable name without '*': {channel!r}")
    if channel.startswith(PRESENCE_PREFIX):
        raise ValueError(f"{channel!r} is a presence channel itself; join the channel it is for")
