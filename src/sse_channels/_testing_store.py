"""Helpers for testing code that sends to, or reads from, a ChannelStore.

``ChannelRecorder`` records what was sent to which channel; ``collect`` and ``drain`` read a
subscription with a deadline or without waiting; ``assert_events`` compares events with a
readable failure; ``gap_reason`` tells a gap signal from an ordinary event.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, final

import anyio

from ._event import Event
from ._exceptions import SubscriptionClosed
from ._gaps import GAP_EVENT
from ._subscription import cursors, record, wait

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from ._store import ChannelStore
    from ._subscription import Subscription

__all__ = [
    "ChannelRecorder",
    "CollectTimeoutError",
    "assert_events",
    "collect",
    "drain",
    "gap_reason",
]

_FIELDS = ("data", "event", "id", "retry", "channel")


class CollectTimeoutError(TimeoutError):
    """``collect`` ran out of time; ``events`` holds what arrived before it did."""

    def __init__(self, events: list[Event], expected: int | None, timeout: float | None) -> None:
        wanted = "the end of the subscription" if expected is None else f"{expected} events"
        super().__init__(f"waited {timeout}s for {wanted}; got {len(events)}: {_listing(events)}")
        #: The events that did arrive, in order.
        self.events = events
        #: How many were asked for (``None``: until the subscription ended).
        self.expected = expected


async def collect(
    subscription: Subscription, n: int | None = None, *, timeout: float | None = 5.0
) -> list[Event]:
    """Read exactly ``n`` events from a subscription, or with ``n=None`` all until it ends.

    Events after the ``n``-th stay pending in the subscription for the next read.

    Args:
        subscription: the subscription to read.
        n: how many events to read; ``None`` reads until the subscription ends (after
            ``aclose()``, ``revoke()`` or the store's ``aclose()``).
        timeout: seconds to wait in all; ``None`` waits for ever.

    Returns:
        The events, in the order the subscription handed them out.

    Raises:
        CollectTimeoutError: a ``TimeoutError``; its ``events`` are what arrived in time.
        SubscriptionClosed: the subscription ended before ``n`` events arrived (its
            ``reason`` says why); ``SlowConsumerError`` if it was disconnected for lag.
        ValueError: ``n`` is negative.

    Cancelling it loses nothing that was not returned: unread events stay pending.
    """
    if n is not None and n < 0:
        raise ValueError(f"n must not be negative: {n}")
    events: list[Event] = []
    with anyio.move_on_after(timeout):
        if n is None:
            async for event in subscription:
                events.append(event)
            return events
        while len(events) < n:
            try:
                event = await subscription.__anext__()
            except StopAsyncIteration:
                reason = subscription.close_reason or "closed"
                raise SubscriptionClosed(
                    reason,
                    f"subscription ended ({reason}) after {len(events)} of {n} events: "
                    f"{_listing(events)}",
                ) from None
            events.append(event)
        return events
    raise CollectTimeoutError(events, n, timeout)


async def drain(subscription: Subscription) -> list[Event]:
    """Every event pending on a subscription right now, without waiting for more.

    On the in-memory backend an event is pending as soon as ``send()`` returns; with a
    networked backend it may still be on its way (use ``collect`` to wait for it).

    Returns:
        The pending events in order; an empty list if there are none, or if the
        subscription has ended.

    Raises:
        SlowConsumerError: the ``"disconnect"`` policy ended the subscription for lag.
    """
    # A deadline in the past cancels the first wait, and only a wait: what is pending is
    # returned without one.
    with anyio.move_on_after(0):
        return await subscription.receive_batch()
    return []


def gap_reason(event: Event) -> str | None:
    """The reason of a gap signal, or ``None`` if ``event`` is not one.

    The reasons are ``"unknown_id"`` and ``"expired"`` (on resume), ``"slow_consumer"``
    (the ``"drop_oldest"`` policy skipped events) and ``"lost"`` (the backend lost them).
    """
    if event.event != GAP_EVENT:
        return None
    reason = json.loads(event.data).get("reason")
    return str(reason) if reason is not None else ""


def assert_events(
    events: Iterable[Event], expected: Iterable[str | Event | Mapping[str, Any]]
) -> None:
    """Assert that ``events`` match ``expected`` one for one, in order.

    Each expected item is one of:

    - a ``str``: the event's ``data``;
    - a mapping of field names (``data``, ``event``, ``id``, ``retry``, ``channel``) to
      values: those fields must be equal, the others are not compared;
    - an ``Event``: it must be equal.

    Example:
        ```python
        assert_events(
            await collect(subscription, 2),
            ["hello", {"event": "presence", "channel": "user:2"}],
        )
        ```

    Raises:
        AssertionError: with both lists and the first difference.
        ValueError: a mapping names a field that events do not have.
    """
    actual = list(events)
    wanted = list(expected)
    for item in wanted:
        if isinstance(item, Mapping):
            unknown = set(item) - set(_FIELDS)
            if unknown:
                raise ValueError(f"events have no field(s) {sorted(unknown)}; use {_FIELDS}")
    problem = None
    for index, (event, item) in enumerate(zip(actual, wanted, strict=False)):
        if not _matches(event, item):
            problem = f"event {index} differs: got {event!r}, expected {item!r}"
            break
    if problem is None and len(actual) != len(wanted):
        problem = f"got {len(actual)} events, expected {len(wanted)}"
    if problem is not None:
        raise AssertionError(f"{problem}\n  got:      {_listing(actual)}\n  expected: {wanted!r}")


def _matches(event: Event, item: str | Event | Mapping[str, Any]) -> bool:
    if isinstance(item, str):
        return event.data == item
    if isinstance(item, Event):
        return event == item
    return all(getattr(event, name) == value for name, value in item.items())


def _listing(events: list[Event]) -> str:
    return "[" + ", ".join(map(repr, events)) + "]"


@final
class ChannelRecorder:
    """Record every event sent to a store's channels, to assert on what went where.

    Point it at the store your application uses, run the code under test, then look at
    what each channel received:

    ```python
    with ChannelRecorder(app.store) as recorder:
        await client.post("/login", data={"user": "ada"})
        assert recorder.data("user:grace") == ['{"online":"ada"}']
        assert recorder.channels == ["user:grace", "user:linus"]
    ```

    It records events sent after it was made, to every channel (or to those matching
    ``patterns``), including channels that appear later. Under the hood it is a
    subscription: it counts as a subscriber in ``store.statistics()``, and it reads the
    channel logs when you look at it, so look at least once every ``history`` events per
    channel (it raises ``AssertionError`` if events were trimmed before it saw them).

    Args:
        store: the store to record.
        patterns: channel names or ``*`` patterns to record; default every channel.

    Raises:
        StoreClosedError: the store is closed.
    """

    def __init__(self, store: ChannelStore, *patterns: str) -> None:
        self._store = store
        self._patterns = patterns or ("*",)
        self._subscription = self._subscribe()
        for cursor in cursors(self._subscription):
            cursor.position = cursor.channel.end  # not a state channel's value: it came before
        self._events: list[Event] = []
        self._stopped = False

    def _subscribe(self) -> Subscription:
        # Never disconnected for lag; the recorder reads the logs itself (see _pull).
        return self._store.subscribe(
            *self._patterns, slow_consumer="drop_oldest", max_lag=sys.maxsize
        )

    def _pull(self) -> None:
        """Record what the channel logs hold past the recorder's cursors, in send order.

        It reads the logs itself rather than through the subscription, which would hand
        out only the latest value of a state channel, and nothing once it was closed.
        """
        if self._stopped:
            return
        subscription = self._subscription
        if subscription.close_reason == "revoked" and not self._store.closed:
            # ``revoke(channel=...)`` ends every subscription on that channel, this one too:
            # subscribe again, carrying over how far each channel's log was read.
            positions = {cursor.channel: cursor.position for cursor in cursors(subscription)}
            subscription = self._subscription = self._subscribe()
            for cursor in cursors(subscription):
                # A channel made since the revoke: all of it is new (0 notices a trimmed
                # start).
                cursor.position = positions.get(cursor.channel, 0)
        # The same cursors and take() a subscription reads with, without coalescing state
        # values (every one was sent) and reporting what was trimmed unread.
        keyed, missed = record(subscription)
        keyed.sort(key=lambda pair: pair[0])
        self._events += [event for _, event in keyed]
        if missed:
            raise AssertionError(
                f"ChannelRecorder missed events on {missed[0]!r}: between two looks at the "
                "recorder they left the channel's history (more were sent than it keeps, or "
                "they outlived its history_ttl)"
            )

    @property
    def events(self) -> list[Event]:
        """Every event recorded so far, in send order."""
        self._pull()
        return list(self._events)

    @property
    def channels(self) -> list[str]:
        """The channels that received events, in the order of their first event."""
        self._pull()
        return list(dict.fromkeys(e.channel for e in self._events if e.channel is not None))

    def sent_to(self, channel: str) -> list[Event]:
        """The events recorded on ``channel``, in send order."""
        self._pull()
        return [event for event in self._events if event.channel == channel]

    def data(self, channel: str) -> list[str]:
        """The ``data`` of each event recorded on ``channel``, in send order."""
        return [event.data for event in self.sent_to(channel)]

    def clear(self) -> None:
        """Forget what was recorded so far (later events are still recorded)."""
        self._pull()
        self._events.clear()

    async def wait_for(self, count: int, *, timeout: float = 5.0) -> list[Event]:
        """Wait until at least ``count`` events are recorded; return them all.

        Useful with a networked backend, whose events arrive some time after ``send()``.

        Raises:
            CollectTimeoutError: fewer arrived within ``timeout`` seconds.
            SubscriptionClosed: the recorder or its store was closed with fewer recorded
                (at once: no more can come).
        """
        with anyio.move_on_after(timeout):
            while True:
                self._pull()
                if len(self._events) >= count:
                    return list(self._events)
                if self.closed:
                    reason = "store_closed" if self._store.closed else "closed"
                    raise SubscriptionClosed(
                        reason,
                        f"recorder ended ({reason}) with {len(self._events)} of {count} "
                        f"events: {_listing(self._events)}",
                    )
                await wait(self._subscription)  # until something is sent (or it closes)
        raise CollectTimeoutError(list(self._events), count, timeout)

    @property
    def closed(self) -> bool:
        """It was closed, or its store was."""
        return self._stopped or self._store.closed

    def close(self) -> None:
        """Stop recording (what was recorded stays readable); idempotent."""
        try:
            self._pull()
        finally:
            self._stopped = True
            self._subscription.close()

    async def aclose(self) -> None:
        """Stop recording; the ``async`` form of ``close``."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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

    def __repr__(self) -> str:
        state = "closed" if self.closed else "recording"
        return f"<ChannelRecorder {len(self._events)} events {state}>"
