"""Channel: one channel's bounded append-only log, and who is waiting on it.

A channel is a log and a subscriber is a cursor into it (see ``_cursor.py``): history,
resume and lag detection all come from this one structure. Positions are local to the
process (0, 1, 2, ... per channel); ``seqs`` holds each event's store-wide ordering key,
which is what ids encode. A reader that has taken everything parks its ``Waiter`` on each
channel it reads; the next append wakes one of them, which wakes the others.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from typing import TYPE_CHECKING, Any, final
from weakref import WeakSet

import anyio

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from ._event import Event

__all__ = ["Channel", "Waiter"]


@final
class Waiter:
    """One reader's wake-up: what it awaits while parked, and whom it wakes after itself.

    The reader sets ``pending`` (an asyncio future, or an anyio event elsewhere) before it
    parks and clears it when it wakes; ``ring`` is all a channel calls.
    """

    __slots__ = ("pending", "relay")

    def __init__(self) -> None:
        self.pending: asyncio.Future[None] | anyio.Event | None = None
        #: The other waiters of the channel that woke this one: this one wakes them next.
        self.relay: dict[Waiter, None] | None = None

    def ring(self, relay: dict[Waiter, None] | None) -> bool:
        """Wake the reader if it waits (it then wakes the rest of ``relay``); whether it did."""
        pending = self.pending
        if pending is None:
            return False
        if isinstance(pending, anyio.Event):
            if pending.is_set():
                return False
            pending.set()
        else:
            if pending.done():
                return False
            pending.set_result(None)
        if relay is not None:
            self.relay = relay
        return True


class Channel:
    __slots__ = (
        "__weakref__",
        "capacity",
        "complete_after",
        "events",
        "has_gap_events",
        "has_value",
        "is_state",
        "listeners",
        "name",
        "parked",
        "seqs",
        "start",
        "subscribers",
        "times",
        "trimmed_seq",
        "ttl",
        "value",
    )

    def __init__(self, name: str, capacity: int, ttl: float | None) -> None:
        self.name = name
        self.capacity = capacity
        self.ttl = ttl
        self.events: list[Event] = []
        self.seqs: list[int] = []
        self.times: list[float] | None = [] if ttl is not None else None
        #: Local position of ``events[0]``.
        self.start = 0
        #: Highest ordering key physically trimmed from ``events``.
        self.trimmed_seq = 0
        #: Every event with an ordering key above this reached this log (resume is local).
        self.complete_after = 0
        #: Readers waiting for the next event; insertion-ordered, O(1) removal.
        self.parked: dict[Waiter, None] = {}
        #: The subscriptions reading this channel (weakly: an unclosed one may be collected).
        self.subscribers: WeakSet[Any] = WeakSet()
        self.listeners: list[Callable[[Event], object]] = []
        self.is_state = False
        self.has_value = False
        self.value: Any = None
        #: A ``lost`` gap signal was ever put into ``events`` (rare): readers that take it
        #: do not count it as a delivered event.
        self.has_gap_events = False

    @property
    def end(self) -> int:
        """The local position the next event will get."""
        return self.start + len(self.events)

    def retained_start(self) -> int:
        """The oldest local position still retained (count and age limits applied)."""
        end = self.start + len(self.events)
        first = max(self.start, end - self.capacity)
        if self.times is not None and self.ttl is not None:
            cutoff = time.monotonic() - self.ttl
            first = max(first, self.start + bisect_right(self.times, cutoff))
        if self.is_state and end > self.start:
            first = min(first, end - 1)  # a state channel always keeps its current value
        return first

    def lost_through(self) -> int:
        """The highest ordering key no longer retained (0 if nothing was ever dropped)."""
        first = self.retained_start()
        if first > self.start:
            return self.seqs[first - self.start - 1]
        return self.trimmed_seq

    def position_after(self, seq: int) -> int:
        """The local position of the first retained event whose ordering key is above ``seq``."""
        return self.start + bisect_right(self.seqs, seq)

    def position_of_id(self, event_id: str) -> int | None:
        """Find a custom (caller-chosen) id in the retained log; newest first."""
        for index in range(len(self.events) - 1, self.retained_start() - self.start - 1, -1):
            if self.events[index].id == event_id:
                return self.start + index + 1
        return None

    def seq_at(self, position: int) -> int:
        """The ordering key of the event just before ``position`` (its cursor's last id)."""
        index = position - self.start - 1
        return self.seqs[index] if index >= 0 else self.trimmed_seq

    def append(self, seq: int, event: Event) -> None:
        self.events.append(event)
        self.seqs.append(seq)
        if self.times is not None:
            self.times.append(time.monotonic())
        # Trim in batches so that appending stays O(1) amortised.
        excess = len(self.events) - self.capacity
        if excess > 16 and excess * 4 > self.capacity:
            self._trim(excess)

    def _trim(self, count: int) -> None:
        self.trimmed_seq = self.seqs[count - 1]
        del self.events[:count]
        del self.seqs[:count]
        if self.times is not None:
            del self.times[:count]
        self.start += count

    def expire(self) -> None:
        """Drop what the age limit no longer retains (called when the channel is idle)."""
        first = self.retained_start()
        if first > self.start:
            self._trim(first - self.start)

    def wake(self) -> None:
        """Wake every parked subscriber; the publisher pays for one wake-up, not N."""
        parked = self.parked
        if parked:
            self.parked = {}
            for waiter in parked:
                if waiter.ring(parked):
                    return
