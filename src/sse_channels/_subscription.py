"""Subscription: a cursor per channel, read as an async iterator of events.

A subscription owns its cursors (``_cursor.py``), merges its channels in send order, runs
its first-read replay after a resume, and counts what it hands out. From its store it
needs only what ``StoreLink`` names. Below the class, ``follow``, ``cursors``, ``wait``
and ``record`` are the package's own way in (the store adds the channels a pattern
matches later; ChannelRecorder reads through the same cursors); they are not exported.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from operator import length_hint
from typing import TYPE_CHECKING, Literal, Protocol, final

import anyio

from ._channel import Waiter
from ._cursor import take
from ._exceptions import SlowConsumerError
from ._gaps import GAP_EVENT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from types import TracebackType

    from typing_extensions import Self

    from ._channel import Channel
    from ._counters import Counters
    from ._cursor import Cursor
    from ._event import Event
    from ._observe import Observer
    from ._snapshots import SnapshotPlan

__all__ = [
    "ReplayPlan",
    "SlowConsumerPolicy",
    "StoreLink",
    "Subscription",
    "cursors",
    "follow",
    "observer_of",
    "record",
    "wait",
]

SlowConsumerPolicy = Literal["disconnect", "drop_oldest"]

_log = logging.getLogger("sse_channels.store")  # a subscription is the store's reader

# Why a subscription ended; ``None`` while it is open.
CloseReason = Literal["closed", "store_closed", "revoked", "slow_consumer", "expired"]

#: What a resumed subscription does at its first read: ``(fetches, gaps)``, the
#: ``(cursor, after, through)`` ranges to read from the backend's history, and the
#: ``(key, reason, channel)`` of the gap signals that ``place`` decided on.
ReplayPlan = tuple["list[tuple[Cursor, int, int]]", "list[tuple[int, str, Channel]]"]

#: The buffer of every subscription with nothing read ahead: shared, never changed.
_EMPTY: list[Event | None] = [None]
#: Its ``__next__``: calling ``NoneType`` returns ``None``, every time, allocating nothing.
_NOTHING = type(None)


class StoreLink(Protocol):
    """What a subscription needs from its store: the whole interface, by public names."""

    #: The store's counters; a subscription adds to them where it hands a batch out.
    counters: Counters
    #: Told what the subscription hands out and when it ends; ``None``: no metrics.
    observer: Observer | None

    def gap_event(self, channel: Channel, reason: str, key: int) -> Event:
        """A gap signal on ``channel`` standing at ordering key ``key``."""

    async def history(
        self, channel: Channel, after: int, through: int
    ) -> tuple[int, list[tuple[int, Event]]] | None:
        """The backend's answer to ``history`` (see the Backend Protocol)."""

    def release(self, subscription: Subscription, channels: list[Channel]) -> None:
        """Unregister a closed subscription from its channels and patterns."""


@final
class Subscription:
    """Events from one or more channels, in send order, as an async iterator.

    Made by [ChannelStore.subscribe][sse_channels.ChannelStore.subscribe]; it is registered
    on its channels at once, so nothing sent after ``subscribe()`` returns is missed, even
    before the first read. Use it as ``async with store.subscribe(...) as sub: async for
    event in sub: ...``, or call [aclose][sse_channels.Subscription.aclose] yourself.

    Iteration ends normally when the subscription is closed, revoked or the store is
    closed (``close_reason`` says which); it raises
    [SlowConsumerError][sse_channels.SlowConsumerError] when the ``"disconnect"`` policy
    ended it for falling behind.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_counters",
        "_cursors",
        "_iter",
        "_last_id",
        "_link",
        "_marks",
        "_max_lag",
        "_next",
        "_plan",
        "_policy",
        "_snapshots",
        "_waiter",
        "close_reason",
        "key",
        "patterns",
    )

    def __init__(
        self,
        link: StoreLink,
        cursors: list[Cursor],
        *,
        key: str | None,
        policy: SlowConsumerPolicy,
        max_lag: int | None,
        patterns: tuple[str, ...],
        plan: ReplayPlan | None = None,
        last_event_id: str | None = None,
        snapshots: SnapshotPlan | None = None,
    ) -> None:
        self._link = link
        self._counters = link.counters
        #: One cursor per channel read (a pattern adds one as each matching channel appears).
        self._cursors = cursors
        #: The replay to run at the first read after a resume, then ``None``.
        self._plan = plan
        #: Where each channel's log ended when it was placed: events before that, handed
        #: out at the first read, count as replayed.
        self._marks: list[int] | None = (
            [cursor.channel.end for cursor in cursors] if plan is not None else None
        )
        #: Events read but not handed out yet, then ``None`` (see ``_set_buffer``).
        self._buffer: list[Event | None] = _EMPTY
        #: An iterator over ``_buffer`` and its ``__next__``: the cheapest way to hand out
        #: events. None and ``_NOTHING`` while it is empty, as a waiting reader's is: three
        #: objects fewer per parked stream.
        self._iter: Iterator[Event | None] | None = None
        self._next: Callable[[], Event | None] = _NOTHING
        # Until it hands out an event, resuming it again means resuming from the same id.
        self._last_id = last_event_id
        self._policy: SlowConsumerPolicy = policy
        self._max_lag = max_lag
        self._waiter = Waiter()
        #: The snapshot channels it reads (see ``_snapshots.py``), or ``None``: the common case.
        self._snapshots = snapshots
        #: Why the subscription ended (``"closed"``, ``"store_closed"``, ``"revoked"``,
        #: ``"slow_consumer"``, ``"expired"``: the stream's credential expired), or
        #: ``None`` while it is open.
        self.close_reason: CloseReason | None = None
        #: The key given to ``subscribe()`` (e.g. a user id), used to revoke it.
        self.key = key
        self.patterns = patterns

    # -- reading -----------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """The names of the channels this subscription reads now."""
        return [cursor.channel.name for cursor in self._cursors]

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event handed out: resume from it with ``last_event_id=``.

        Before the first event, the id it resumed from (``None`` if it started live).
        """
        self._remember_last_id()
        return self._last_id

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        """Return the next event, waiting for one if none is pending.

        Raises:
            StopAsyncIteration: the subscription was closed, revoked, or the store closed.
            SlowConsumerError: the ``"disconnect"`` policy ended it for falling behind.

        Cancelling it loses nothing: a pending event stays pending.
        """
        event = self._next()
        if event is not None:  # the hot path: one C call; the last id is found when asked
            return event
        buffer = self._buffer  # all handed out: its last event is the last one delivered
        if len(buffer) > 1 and buffer[-2] is not None and buffer[-2].id is not None:
            self._last_id = buffer[-2].id
        try:
            # ``_read_batch`` directly unless snapshot channels are read: one coroutine
            # less per batch on the common path.
            batch = await (self._read_batch() if self._snapshots is None else self._next_batch())
        except BaseException:
            self._set_buffer([])  # a cancelled or failed wait leaves a usable, empty buffer
            raise
        if not batch:
            self._set_buffer(batch)
            raise StopAsyncIteration
        self._set_buffer(batch)
        return self._next()  # type: ignore[return-value]  # the batch is not empty

    def _consumed(self) -> int:
        """How many events of ``_buffer`` were handed out already."""
        iterator = self._iter
        if iterator is None:
            return 0
        size = len(self._buffer) - 1
        return min(size, size + 1 - length_hint(iterator))

    def _set_buffer(self, batch: list[Event]) -> None:
        # A ``None`` after the last event ends the buffer without a StopIteration (raising
        # one per batch costs more than the rest of __anext__). ``batch`` is ours to extend.
        if not batch:
            self._buffer = _EMPTY
            self._iter = None
            self._next = _NOTHING
            return
        buffer: list[Event | None] = batch  # type: ignore[assignment]
        buffer.append(None)
        self._buffer = buffer
        self._iter = iterator = iter(buffer)
        self._next = iterator.__next__

    def _remember_last_id(self) -> None:
        for event in reversed(self._buffer[: self._consumed()]):
            assert event is not None
            if event.id is not None:
                self._last_id = event.id
                return

    async def receive_batch(self) -> list[Event]:
        """Wait for at least one event and return every event pending, in order.

        Everything pending is returned at once so that a writer can send it in one write.
        Returns an empty list once the subscription has ended normally.

        Raises:
            SlowConsumerError: the ``"disconnect"`` policy ended it for falling behind.

        Cancelling it loses nothing: pending events stay pending.
        """
        if len(self._buffer) == 1:
            # Nothing read ahead by ``__anext__`` (a writer's case, every time): no buffer
            # to hand over or replace, and one frame less while parked.
            batch = await (self._read_batch() if self._snapshots is None else self._next_batch())
        else:
            self._remember_last_id()
            batch = self._buffer[self._consumed() : -1]  # type: ignore[assignment]
            self._set_buffer([])
            if not batch:
                batch = await self._next_batch()
            elif self.close_reason is None:
                batch += self._collect()
                if self._snapshots is not None:
                    batch = await self._snapshots.fill_gaps(batch)
        for event in reversed(batch):
            if event.id is not None:
                self._last_id = event.id
                break
        return batch

    def batches(self) -> AsyncIterator[list[Event]]:
        """Iterate over batches of pending events (see ``receive_batch``) until the end.

        Leaving the loop early is fine: this is a plain iterator, not an async generator
        that would need closing (trio warns about those when they are dropped).
        """
        return _Batches(self)

    async def _next_batch(self) -> list[Event]:
        snapshots = self._snapshots
        if snapshots is None:
            return await self._read_batch()
        if snapshots.pending and self.close_reason is None:
            first = await snapshots.first()
            if self.close_reason is None:
                first += await snapshots.fill_gaps(self._collect())
            if first:
                return first
        return await snapshots.fill_gaps(await self._read_batch())

    async def _read_batch(self) -> list[Event]:
        if self._plan is not None and self.close_reason is None:
            batch = await self._replay()
            if batch:
                return batch
        while True:
            if self.close_reason is not None:
                if self.close_reason == "slow_consumer":
                    raise SlowConsumerError(
                        "subscriber fell further behind than its channel retains; "
                        f"resume from last_event_id={self._last_id!r}"
                    )
                return []
            batch = self._collect()
            if batch:
                return batch
            if self.close_reason is None:  # _collect may have disconnected it: don't park
                # ``_park()``, inline: a parked reader's memory is mostly its frames.
                waiter = self._waiter
                for cursor in self._cursors:
                    cursor.channel.parked[waiter] = None
                try:
                    try:
                        loop = asyncio.get_running_loop()
                    except RuntimeError:  # not asyncio: trio, via anyio's portable event
                        event = waiter.pending = anyio.Event()
                        await event.wait()
                    else:
                        future = waiter.pending = loop.create_future()
                        await future
                finally:
                    self._unpark(waiter)

    def _collect(self) -> list[Event]:
        """Everything pending, in send order, with the lag policy applied; counted here."""
        cursors = self._cursors
        if len(cursors) == 1:  # the common case, kept short
            cursor = cursors[0]
            events, gap, dropped, coalesced = take(cursor, self._policy, self._max_lag)
            if events is None:
                return self._disconnect()
            if gap is None and not dropped and not coalesced and not cursor.channel.has_gap_events:
                if events:
                    self._counters.events_delivered += len(events)
                    observer = self._link.observer
                    if observer is not None:
                        observer.delivered(self, cursor.channel.name, len(events))
                return events
            keyed: list[tuple[int, Event]] = []
            signals = self._add(keyed, cursor, events, gap)
            return self._count(keyed, signals, dropped, coalesced, 0)
        keyed = []
        signals = dropped = coalesced = 0
        for cursor in cursors:
            events, gap, lost, skipped = take(cursor, self._policy, self._max_lag)
            if events is None:
                # Disconnected for lag on one channel: handing out later events of the
                # others would move its last id past events it never got.
                return self._disconnect()
            if events or gap is not None:
                signals += self._add(keyed, cursor, events, gap)
            dropped += lost
            coalesced += skipped
        return self._count(keyed, signals, dropped, coalesced, 0)

    def _add(
        self, keyed: list[tuple[int, Event]], cursor: Cursor, events: list[Event], gap: int | None
    ) -> int:
        """Add what ``take`` returned to ``keyed``; how many gap signals that was."""
        signals = 0
        if gap is not None:
            keyed.append((gap, self._link.gap_event(cursor.channel, "slow_consumer", gap)))
            signals = 1
        if events:
            keyed += _keyed(cursor, events)
            if cursor.channel.has_gap_events:  # a backend reported a loss (rare)
                signals += sum(1 for event in events if event.event == GAP_EVENT)
        return signals

    def _count(
        self,
        keyed: list[tuple[int, Event]],
        signals: int,
        dropped: int,
        coalesced: int,
        replayed: int,
    ) -> list[Event]:
        """The batch in send order, counted: the one place a handed-out batch is counted."""
        keyed.sort(key=_first)
        batch = [event for _, event in keyed]
        counters = self._counters
        counters.events_delivered += len(batch) - signals
        counters.gaps += signals
        counters.dropped += dropped
        counters.coalesced += coalesced
        counters.replayed += replayed
        observer = self._link.observer
        if observer is not None and batch:
            observer.handed_out(self, batch, replayed)
        return batch

    async def _replay(self) -> list[Event]:
        """The first batch of a resumed subscription: what it missed, then the rest.

        Everything, gap signals included, comes in send order (by ordering key): a gap's id
        is where its channel's retained history starts, so a client that reconnects with
        the id of any event of this batch, a gap's too, skips nothing of the other channels.
        The replay does not count as lag (``max_lag``): with the ``"disconnect"`` policy a
        resume from further back would otherwise end at once, every time it was tried.
        """
        assert self._plan is not None
        assert self._marks is not None
        fetches, planned = self._plan
        gaps = list(planned)
        keyed: list[tuple[int, Event]] = []
        replayed = 0
        for cursor, after, through in fetches:
            found = await self._link.history(cursor.channel, after, through)
            if found is None:
                gaps.append((through, "expired", cursor.channel))
                continue
            gone, fetched = found
            if gone > after:  # the oldest of them are no longer retained
                gaps.append((gone, "expired", cursor.channel))
            keyed += fetched
            replayed += len(fetched)
        self._plan = None  # done only now: a failed fetch is tried again next read
        marks, self._marks = self._marks, None
        for cursor in self._cursors:
            channel = cursor.channel
            first = channel.retained_start()
            if cursor.position < first and not channel.is_state:
                # Trimmed since subscribe() placed it: gone before it could read, which is
                # no slowness of its own. One gap for the channel, at where it now starts.
                gaps = [gap for gap in gaps if gap[2] is not channel]
                gaps.append((channel.seq_at(first), "expired", channel))
                cursor.position = first
        signals = dropped = coalesced = 0
        for index, cursor in enumerate(self._cursors):
            if self.close_reason is not None:
                # Closed: handing out part of the merge could move its last id past events
                # it never got. A resume from the same id starts over.
                return []
            events, gap, lost, skipped = take(cursor, self._policy, None)
            if events is None:
                return self._disconnect()
            if events and not cursor.channel.is_state and index < len(marks):
                # What was taken runs to the log's end; those before the mark were there
                # when it subscribed. (A channel a pattern added since has no mark.)
                before = marks[index] - (cursor.channel.end - len(events))
                replayed += max(0, min(len(events), before))
            signals += self._add(keyed, cursor, events, gap)
            dropped += lost
            coalesced += skipped
        for key, reason, channel in gaps:
            keyed.append((key, self._link.gap_event(channel, reason, key)))
        return self._count(keyed, signals + len(gaps), dropped, coalesced, replayed)

    def _disconnect(self) -> list[Event]:
        self._counters.slow_consumer_disconnects += 1
        self.close("slow_consumer")
        _log.info(
            "slow consumer disconnected: a subscriber of %s (key=%r) fell further behind "
            "than %s; it may resume from %r",
            self.channels,
            self.key,
            "its history" if self._max_lag is None else f"max_lag={self._max_lag}",
            self._last_id,
        )
        return []

    # -- waiting -----------------------------------------------------------------------

    async def _park(self) -> None:
        cursors = self._cursors
        waiter = self._waiter
        for cursor in cursors:
            cursor.channel.parked[waiter] = None
        try:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not asyncio: trio, via anyio's portable event
                event = waiter.pending = anyio.Event()
                await event.wait()
            else:
                future = waiter.pending = loop.create_future()
                await future
        finally:
            self._unpark(waiter)

    def _unpark(self, waiter: Waiter) -> None:
        waiter.pending = None
        relay = waiter.relay
        if relay is not None:  # woken by a channel: wake the others it had parked
            waiter.relay = None
            for other in relay:
                if other is not waiter:
                    other.ring(None)
        cursors = self._cursors
        if len(cursors) > 1:
            for cursor in cursors:
                cursor.channel.parked.pop(waiter, None)

    # -- closing -----------------------------------------------------------------------

    def close(self, reason: CloseReason = "closed") -> None:
        """End the subscription now (synchronous form of ``aclose``); idempotent."""
        if self.close_reason is not None:
            return
        # Events of the current batch not handed out yet are dropped with the rest: after a
        # revoke nothing more reaches the reader, and its last id still says where it was.
        self._remember_last_id()
        self._set_buffer([])
        self.close_reason = reason
        waiter = self._waiter
        channels = [cursor.channel for cursor in self._cursors]
        for channel in channels:
            channel.parked.pop(waiter, None)
        self._link.release(self, channels)
        waiter.ring(None)
        observer = self._link.observer
        if observer is not None:
            observer.ended(self)

    async def aclose(self) -> None:
        """End the subscription and release its channels; a waiting reader stops.

        Never blocks, so it is safe in ``finally`` and in cancelled code.
        """
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "close_reason", "closed") is None:
            warnings.warn(
                f"unclosed {self!r}; use 'async with' or call aclose()",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    def __repr__(self) -> str:
        state = self.close_reason or "open"
        return f"<Subscription {self.channels + list(self.patterns)!r} {state}>"


@final
class _Batches:
    __slots__ = ("_subscription",)

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[Event]:
        batch = await self._subscription.receive_batch()
        if not batch:
            raise StopAsyncIteration
        return batch


def _first(pair: tuple[int, Event]) -> int:
    return pair[0]


def _keyed(cursor: Cursor, events: list[Event]) -> list[tuple[int, Event]]:
    """``events`` just taken from ``cursor`` with their ordering keys (they end the log)."""
    seqs = cursor.channel.seqs
    return list(zip(seqs[len(seqs) - len(events) :], events, strict=True))


# -- the package's way in (not exported) ----------------------------------------------------


def follow(subscription: Subscription, cursor: Cursor) -> None:
    """Add a channel a pattern of ``subscription`` matched after it subscribed."""
    subscription._cursors.append(cursor)
    if subscription._waiter.pending is not None:  # waiting on its other channels (or none)
        cursor.channel.parked[subscription._waiter] = None


def observer_of(subscription: Subscription) -> Observer | None:
    """The observer of the subscription's store (its metrics), or ``None``."""
    return subscription._link.observer


def cursors(subscription: Subscription) -> list[Cursor]:
    """The subscription's cursors, one per channel it reads (the list itself)."""
    return subscription._cursors


async def wait(subscription: Subscription) -> None:
    """Wait until one of the subscription's channels gets an event, or it closes."""
    if subscription.close_reason is None:
        await subscription._park()


def record(subscription: Subscription) -> tuple[list[tuple[int, Event]], list[str]]:
    """Every event past the cursors, state values and all, for ChannelRecorder.

    Returns the ``(key, event)`` pairs (unsorted) and the names of the channels whose
    events left the history before they were read. Counted as delivered, as a batch is.
    """
    keyed: list[tuple[int, Event]] = []
    missed: list[str] = []
    for cursor in subscription._cursors:
        events, gap, _, _ = take(cursor, "record", None)
        if gap is not None:
            missed.append(cursor.channel.name)
        if events:
            keyed += _keyed(cursor, events)
    subscription._counters.events_delivered += len(keyed)
    return keyed, missed
