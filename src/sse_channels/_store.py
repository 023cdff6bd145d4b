"""ChannelStore: named channels with fan-out, history, resume and slow-consumer policies."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final
from weakref import WeakSet

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._channel import Channel
from ._counters import Counters
from ._cursor import Cursor, place
from ._encode import check_id, format_sse, serialize
from ._event import Event, trusted_event
from ._exceptions import StoreClosedError, SubscriptionClosed
from ._gaps import GAP_EVENT, gap_event
from ._pattern import compile_pattern, is_pattern
from ._snapshots import SnapshotPlan, SnapshotProvider
from ._subscription import SlowConsumerPolicy, Subscription, follow
from .backends.memory import MemoryBackend

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup
    from typing_extensions import Self

    from ._observe import Observer
    from .backends._base import Backend

__all__ = ["GAP_EVENT", "ChannelStore", "StoreStatistics"]

_LOOP_FINISHED = (
    "the event loop this store last ran in has finished; use the store in the running loop "
    "first (async with store, subscribe or send)"
)

_Listener = Callable[[Event], object]

_log = logging.getLogger("sse_channels.store")


@dataclass(frozen=True)
class StoreStatistics:
    """A snapshot of a store's counters (see ``ChannelStore.statistics()``)."""

    channels: int
    subscribers: int
    watched_channels: int
    events_sent: int
    events_delivered: int
    slow_consumer_disconnects: int
    dropped: int
    coalesced: int
    replayed: int
    gaps: int
    revoked: int
    backend: dict[str, Any]


@final
class ChannelStore:
    """Named channels of server-sent events, in one process or (with a backend) many.

    Modeled on a Svelte writable store: ``subscribe`` hands out live subscriptions,
    ``listen`` takes a callback and returns the function that unsubscribes it, and state
    channels (``set`` / ``update`` / ``get``) give every new subscriber the current value.

    Args:
        backend: carries events between processes; default: a new ``MemoryBackend``.
        history: events retained per channel, for resume and as the slow-consumer buffer.
        history_ttl: also forget events older than this many seconds (``None``: no limit).
        slow_consumer: what happens to a subscriber whose unread events are no longer
            retained: ``"disconnect"`` (it ends with ``SlowConsumerError``; an SSE client
            reconnects and resumes) or ``"drop_oldest"`` (a gap signal, then it goes on).
        max_lag: end or skip (per ``slow_consumer``) a subscriber this many events behind,
            before history runs out; ``None``: only when its events are gone.
        serializer: turns non-``str`` data into text; default compact JSON.
        metrics: told what happens, for metrics: a
            [PrometheusMetrics][sse_channels.metrics.prometheus.PrometheusMetrics] or an
            [OpenTelemetryMetrics][sse_channels.metrics.otel.OpenTelemetryMetrics];
            its subscriptions, their streams and the backend report to it too. ``None``
            (the default): nothing is measured, and no metrics module is imported.

    Raises:
        ValueError: ``history`` below 1, ``history_ttl`` or ``max_lag`` not positive.
        TypeError: ``metrics`` lacks a method of the observer seam.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        history: int = 1000,
        history_ttl: float | None = None,
        slow_consumer: SlowConsumerPolicy = "disconnect",
        max_lag: int | None = None,
        serializer: Callable[[Any], str | bytes] | None = None,
        metrics: Observer | None = None,
    ) -> None:
        _check_history(history, history_ttl)
        _check_policy(slow_consumer, max_lag)
        if metrics is not None:
            from ._observe import check_observer  # only when asked for: else never imported

            check_observer(metrics)
        self._backend: Backend = backend if backend is not None else MemoryBackend()
        self._history = history
        self._history_ttl = history_ttl
        self._channel_limits: dict[str, tuple[int, float | None]] = {}
        self._policy: SlowConsumerPolicy = slow_consumer
        self._max_lag = max_lag
        self._serializer = serializer
        self._channels: dict[str, Channel] = {}
        self._patterns: dict[str, tuple[Callable[[str], bool], WeakSet[Subscription]]] = {}
        self._subscriptions: WeakSet[Subscription] = WeakSet()
        self._snapshots: dict[str, tuple[Callable[[str], bool], SnapshotProvider, str]] = {}
        self._closed = False
        self._started = False
        self._starting: anyio.Event | None = None
        self._task_group: TaskGroup | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._counters = Counters()
        self._observer = metrics
        self._link = StoreLink(self)
        self._backend.attach(self._deliver)
        if metrics is not None:
            observe = getattr(self._backend, "observe", None)
            if callable(observe):  # optional in the Backend Protocol
                observe(metrics)

    # -- configuration -----------------------------------------------------------------

    def configure_channel(
        self, channel: str, *, history: int | None = None, history_ttl: float | None = None
    ) -> None:
        """Set retention for one channel (before or after it exists)."""
        _check_channel(channel)
        limits = (
            self._history if history is None else history,
            self._history_ttl if history_ttl is None else history_ttl,
        )
        _check_history(*limits)
        self._channel_limits[channel] = limits
        existing = self._channels.get(channel)
        if existing is not None:
            existing.capacity, existing.ttl = limits
            if existing.ttl is not None and existing.times is None:
                # Their real age is unknown: count it from now rather than drop them all.
                existing.times = [time.monotonic()] * len(existing.events)

    def provide_snapshot(
        self, channels: str, provider: SnapshotProvider, *, event: str = "snapshot"
    ) -> Callable[[], None]:
        """Make ``channels`` snapshot channels: readers get their state first, and after gaps.

        For a channel whose events are changes to some state (presence's joins and leaves),
        a reader that missed changes cannot rebuild the state. A subscription to a channel
        that ``channels`` names (or matches, with ``*``) then hands out a snapshot event of
        type ``event``, with data ``await provider(channel)``:

        - first, when it starts live (no ``last_event_id``); its id is the store's newest
          key when it subscribed, so a reader that resumes from it gets every change made
          since (a change already in the snapshot may come again: make applying a change
          twice harmless);
        - in place of each gap signal on the channel (a resume that history cannot cover,
          a trimmed log, a ``drop_oldest`` skip, events a backend lost), with the gap's id.

        A resume that history covers gets the changes it missed and no snapshot. A provider
        that returns ``None`` sends nothing (a gap then stays a gap); one that raises makes
        the read raise. Channels a pattern subscription meets later get no snapshot.

        Returns:
            The function that unregisters the provider.

        Raises:
            ValueError, TypeError: a bad name, ``provider`` not callable, a reserved or bad
                ``event``, or ``channels`` already has a provider.
        """
        _check_channel(channels, pattern_ok=True)
        if not callable(provider):
            raise TypeError("provider must be an async callable: provider(channel) -> data")
        if event == GAP_EVENT:
            raise ValueError(f"event type {GAP_EVENT!r} is reserved for the store's gap signal")
        format_sse("", event=event)  # the event type is checked here, not at the first read
        if channels in self._snapshots:
            raise ValueError(f"{channels!r} has a snapshot provider already")
        entry = (compile_pattern(channels), provider, event)
        self._snapshots[channels] = entry

        def unregister() -> None:
            if self._snapshots.get(channels) is entry:
                del self._snapshots[channels]

        return unregister

    # -- sending -----------------------------------------------------------------------

    async def send(
        self,
        channel: str,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> Event:
        """Send an event to every subscriber of ``channel`` and keep it in its history.

        Args:
            channel: the channel name (no ``*``: that makes a pattern).
            data: ``str``, or anything the store's serializer accepts (JSON by default).
            event: the event type; ``None`` for the browser's default ``message``.
            id: a caller-chosen id (printable ASCII, unique within the history); by
                default the store assigns one that resume understands across channels.
            retry: the reconnection delay in milliseconds to tell the browser.

        Returns:
            The event as sent, with its id.

        Raises:
            ValueError, TypeError: bad input, or ``channel`` is a state channel here (change
                it with ``set`` or ``update``, which keep ``get`` right); nothing is stored.
            StoreClosedError: the store was closed.

        On the in-memory backend this completes without yielding to the event loop, so a
        burst of sends reaches each subscriber as one batch. Cancelling it on a networked
        backend may or may not have sent the event.
        """
        draft = self._draft(channel, data, event, id, retry)
        self._refuse_state(channel)
        self._remember_loop()
        if not self._started:
            await self._start()
        published = await self._backend.publish(channel, draft)
        if self._observer is not None:
            self._observer.sent(channel)
        return published

    def send_sync(
        self,
        channel: str,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> Event:
        """Send from a thread that is not running the store's event loop.

        For worker threads, sync Django or Flask views, thread pools. Input is checked in
        the calling thread (bad input raises here); the event is then handed to the
        store's event loop and this call waits until it is stored.

        Raises:
            ValueError, TypeError: bad input; nothing is stored.
            StoreClosedError: the store was closed.
            RuntimeError: called from the event loop's own thread (use ``await send``),
                or the store has not run in an event loop yet and its backend cannot
                publish without one, or the loop it last ran in has finished.
        """
        draft = self._draft(channel, data, event, id, retry)
        self._refuse_state(channel)
        if self._loop_thread == threading.get_ident():
            try:
                anyio.lowlevel.current_token()
            except RuntimeError:  # no loop runs here now: the one the store knew has ended
                self._token = self._loop_thread = None
                raise RuntimeError(_LOOP_FINISHED) from None
            raise RuntimeError("send_sync() called from the event loop thread; use await send()")
        if self._token is None:
            published = self._backend.publish_sync(channel, draft)
            if published is None:
                raise RuntimeError(
                    "the store has not been used in an event loop yet; send_sync() needs "
                    "one to hand the event to (use the store in your app's lifespan first)"
                )
            if self._observer is not None:
                self._observer.sent(channel)
            return published
        try:
            return anyio.from_thread.run(self._publish_checked, channel, draft, token=self._token)
        except anyio.RunFinishedError:
            self._token = self._loop_thread = None  # the next use in a running loop notes it
            raise RuntimeError(_LOOP_FINISHED) from None

    async def _publish_checked(self, channel: str, draft: Event) -> Event:
        if not self._started:
            await self._start()  # raises StoreClosedError if the store was closed
        elif self._closed:
            raise StoreClosedError()
        published = await self._backend.publish(channel, draft)
        if self._observer is not None:
            self._observer.sent(channel)
        return published

    def _draft(
        self, channel: str, data: Any, event: str | None, id: str | None, retry: int | None
    ) -> Event:
        if self._closed:
            raise StoreClosedError()
        if type(channel) is not str or not channel or "*" in channel or not channel.isprintable():
            _check_channel(channel)
        if event == GAP_EVENT:
            raise ValueError(f"event type {GAP_EVENT!r} is reserved for the store's gap signal")
        if id is not None:
            check_id(id)
        text = data if type(data) is str else serialize(data, self._serializer)
        return trusted_event(
            text, event, id, retry, channel, format_sse(text, event=event, id=id, retry=retry)
        )

    def _refuse_state(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is not None and state.is_state:
            raise ValueError(
                f"{channel!r} is a state channel: change it with set() or update(), "
                "so that get() and new subscribers agree on its value"
            )

    # -- state channels (Svelte writable) ----------------------------------------------

    async def set(self, channel: str, value: Any, *, event: str | None = None) -> Event:
        """Make ``channel`` a state channel holding ``value``, and send it.

        Every new subscriber of a state channel first receives the current value, and a
        subscriber that falls behind gets the latest value instead of every one between.

        Raises:
            ValueError, TypeError: bad input; the value is not changed.
            StoreClosedError: the store was closed.
        """
        draft = self._draft(channel, value, event, None, None)
        state = self._channel(channel)
        state.is_state = True
        state.value, state.has_value = value, True
        self._remember_loop()
        if not self._started:
            await self._start()
        published = await self._backend.publish(channel, draft)
        if self._observer is not None:
            self._observer.sent(channel)
        key = self._backend.parse_id(published.id) if published.id is not None else None
        if key is not None and not (state.seqs and key <= state.seqs[-1]):
            # The backend may deliver before publish() returns or later (see the Backend
            # rules): whichever comes first puts the value in the log, the other is ignored.
            self._deliver(channel, key, published)
        return published

    async def update(
        self, channel: str, updater: Callable[[Any], Any], *, event: str | None = None
    ) -> Event:
        """Set a state channel to ``updater(current value)`` (``None`` if it has none)."""
        return await self.set(channel, updater(self.get(channel)), event=event)

    def get(self, channel: str, default: Any = None) -> Any:
        """The current value of a state channel, or ``default`` if it was never set."""
        state = self._channels.get(channel)
        if state is None or not state.has_value:
            return default
        return state.value

    # -- receiving ---------------------------------------------------------------------

    def subscribe(
        self,
        *channels: str,
        last_event_id: str | None = None,
        key: str | None = None,
        slow_consumer: SlowConsumerPolicy | None = None,
        max_lag: int | None = None,
    ) -> Subscription:
        """Start receiving the events of one or more channels (``*`` patterns allowed).

        The subscription is live as soon as this returns. With ``last_event_id`` it first
        replays what each channel retains after that id, then goes on live with no event
        lost or repeated in between; if the id is unknown (e.g. from before a restart)
        or older than the history, a ``gap`` event (see ``GAP_EVENT``) comes first.

        Args:
            channels: channel names; a name with ``*`` matches every channel it fits,
                including channels that appear later.
            last_event_id: resume after this id (the browser's ``Last-Event-ID``).
            key: a label to revoke it by, e.g. the user id (``store.revoke(key=...)``).
            slow_consumer: override the store's policy for this subscription.
            max_lag: override the store's ``max_lag`` for this subscription.

        Raises:
            ValueError: no channel, or a bad name.
            StoreClosedError: the store was closed.
        """
        if self._closed:
            raise StoreClosedError()
        if not channels:
            raise ValueError("subscribe() needs at least one channel or pattern")
        for name in channels:
            _check_channel(name, pattern_ok=True)
        if last_event_id is not None and type(last_event_id) is not str:
            raise TypeError("last_event_id must be str or None")
        policy = slow_consumer or self._policy
        lag = self._max_lag if max_lag is None else max_lag
        _check_policy(policy, lag)
        self._remember_loop(refresh=True)
        patterns = tuple(dict.fromkeys(n for n in channels if is_pattern(n)))
        names = list(dict.fromkeys(n for n in channels if not is_pattern(n)))
        for name in names:
            self._channel(name)
        for pattern in patterns:
            found = self._patterns.get(pattern)
            match = found[0] if found is not None else compile_pattern(pattern)
            names.extend(n for n in self._channels if match(n) and n not in names)
        resume = self._resume_key(names, last_event_id)
        latest = self._backend.latest_key() if resume == -1 else 0
        cursors: list[Cursor] = []
        fetches: list[tuple[Cursor, int, int]] = []
        gaps: list[tuple[int, str, Channel]] = []
        watched: list[str] = []
        try:
            for pattern in patterns:
                if pattern not in self._patterns:  # its first subscriber
                    self._backend.watch(pattern)
                    watched.append(pattern)
            for name in names:
                channel = self._channel(name)
                self._watch(channel)
                cursor, gap, fetch = place(channel, resume, latest)
                cursors.append(cursor)
                if gap is not None:
                    gaps.append((gap[1], gap[0], channel))
                if fetch is not None:
                    fetches.append((cursor, *fetch))
        except BaseException:
            for pattern in watched:
                self._backend.unwatch(pattern)
            for cursor in cursors:
                self._maybe_unwatch(cursor.channel)
            raise
        snapshots = self._snapshot_plan(cursors, resume) if self._snapshots else None
        subscription = Subscription(
            self._link,
            cursors,
            key=key,
            policy=policy,
            max_lag=lag,
            patterns=patterns,
            # The first read replays (see Subscription._replay); a resume always has one.
            plan=(fetches, gaps) if resume is not None else None,
            last_event_id=last_event_id,
            snapshots=snapshots,
        )
        for cursor in cursors:
            cursor.channel.subscribers.add(subscription)
        for pattern in patterns:
            entry = self._patterns.get(pattern)
            if entry is None:
                entry = self._patterns[pattern] = (compile_pattern(pattern), WeakSet())
            entry[1].add(subscription)
        self._subscriptions.add(subscription)
        return subscription

    async def receive(self, channel: str, *, timeout: float | None = None) -> Event:
        """Wait for the next event sent to ``channel`` after this call, and return it.

        A state channel returns its current value at once.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            StoreClosedError: the store was closed before an event arrived.
            SubscriptionClosed: the wait was revoked (``revoke(channel=...)``).

        Cancelling it loses nothing but the wait.
        """
        with anyio.fail_after(timeout):
            async with self.subscribe(channel) as subscription:
                async for event in subscription:
                    return event
        if subscription.close_reason == "store_closed":
            raise StoreClosedError("the store was closed while waiting")
        raise SubscriptionClosed(subscription.close_reason or "closed")

    def listen(self, channel: str, callback: _Listener) -> Callable[[], None]:
        """Call ``callback(event)`` for each event on ``channel``; return the unsubscriber.

        The Svelte store contract: the callback runs synchronously inside ``send`` (in the
        event loop's thread) and, on a state channel, once at once with the current value.
        Keep it short and non-blocking. An exception from it propagates to the sender
        after the event is stored and the other callbacks ran.
        """
        if self._closed:
            raise StoreClosedError()
        _check_channel(channel)
        if not callable(callback):
            raise TypeError("callback must be callable")
        state = self._channel(channel)
        self._watch(state)
        handle: list[_Listener] = [callback]  # a distinct object per listen() call
        listener: _Listener = lambda event: handle[0](event)  # noqa: E731
        state.listeners.append(listener)
        if state.is_state and state.events:
            try:
                callback(state.events[-1])
            except BaseException:
                # The caller never gets the unsubscriber, so nothing may stay registered.
                state.listeners.remove(listener)
                self._maybe_unwatch(state)
                raise

        def unsubscribe() -> None:
            if listener in state.listeners:
                state.listeners.remove(listener)
                self._maybe_unwatch(state)

        return unsubscribe

    # -- revocation and lifecycle -------------------------------------------------------

    def revoke(self, *, key: str | None = None, channel: str | None = None) -> int:
        """End the live subscriptions of a key (e.g. a user) and/or a channel now.

        Their readers finish normally with ``close_reason == "revoked"``; an SSE response
        ends. Returns how many were ended.
        """
        if key is None and channel is None:
            raise ValueError("revoke() needs key=, channel= or both")
        ended = 0
        for subscription in list(self._subscriptions):
            if subscription.closed:
                continue
            if key is not None and subscription.key != key:
                continue
            if channel is not None and channel not in subscription.channels:
                continue
            subscription.close("revoked")
            ended += 1
        self._counters.revoked += ended
        _log.log(
            logging.INFO if ended else logging.DEBUG,
            "revoked %d subscription(s) (key=%r, channel=%r)",
            ended,
            key,
            channel,
        )
        return ended

    async def aclose(self) -> None:
        """Close the store: every subscription ends normally, and sending raises.

        Call it when the server shuts down (e.g. in the app's lifespan) so that streaming
        responses finish and the server can stop. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.close("store_closed")
        await self._backend.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        """Start the store for the duration of the block (e.g. your app's lifespan).

        The backend's background work (the Redis reader, say) runs in a task group that
        this block owns; leaving the block closes the store and stops it.

        Raises:
            StoreClosedError: the store was closed.
            BackendError: the backend could not start (e.g. Redis cannot be reached).
        """
        self._remember_loop(refresh=True)
        if self._closed:
            raise StoreClosedError()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await self._start(task_group)
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        self._task_group = task_group
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
            task_group, self._task_group = self._task_group, None
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)

    def statistics(self) -> StoreStatistics:
        """A snapshot of counters: channels, live subscribers, events, drops, gaps."""
        live = sum(1 for s in self._subscriptions if not s.closed)
        watched = sum(1 for c in self._channels.values() if c.subscribers or c.listeners)
        return StoreStatistics(
            channels=len(self._channels),
            subscribers=live,
            watched_channels=watched,
            backend=self._backend.statistics(),
            **self._counters.snapshot(),
        )

    # -- internals ---------------------------------------------------------------------

    async def _start(self, task_group: TaskGroup | None = None) -> None:
        """Start the backend (again with a task group, to hand it over); one at a time.

        The store counts as started only once ``start`` succeeded: a failed start is tried
        again by the next call, and concurrent first sends wait instead of publishing early.
        """
        while True:
            if self._closed:
                raise StoreClosedError()
            if self._started and task_group is None:
                return
            starting = self._starting
            if starting is None:
                break
            await starting.wait()
        self._starting = starting = anyio.Event()
        try:
            await self._backend.start(task_group)
            self._started = True
        finally:
            self._starting = None
            starting.set()

    def _remember_loop(self, *, refresh: bool = False) -> None:
        """Note the running event loop, for ``send_sync`` to hand events to.

        ``send`` only notes the first one (this costs about 1 µs); ``subscribe`` and
        ``async with`` note the current one, so a store used again in a later loop (a
        module-level store across tests, each in its own loop) follows it there.
        """
        if self._token is None or refresh:
            try:
                self._token = anyio.lowlevel.current_token()
            except RuntimeError:
                return
            self._loop_thread = threading.get_ident()

    def _channel(self, name: str) -> Channel:
        channel = self._channels.get(name)
        if channel is None:
            capacity, ttl = self._channel_limits.get(name, (self._history, self._history_ttl))
            channel = self._channels[name] = Channel(name, capacity, ttl)
            for match, subscriptions in self._patterns.values():
                if match(name):
                    for subscription in subscriptions:
                        if not subscription.closed and name not in subscription.channels:
                            # Its first event is being sent now: read from there.
                            self._watch(channel)
                            channel.subscribers.add(subscription)
                            follow(subscription, Cursor(channel, channel.end))
        return channel

    def _watch(self, channel: Channel) -> None:
        if not channel.subscribers and not channel.listeners:
            complete_after = self._backend.watch(channel.name)
            channel.complete_after = max(channel.complete_after, complete_after)

    def _maybe_unwatch(self, channel: Channel) -> None:
        if not channel.subscribers and not channel.listeners:
            self._backend.unwatch(channel.name)
            channel.expire()
            # A channel that never had an event holds nothing worth keeping; without this,
            # every name ever subscribed to (e.g. from a URL) would stay in memory.
            name = channel.name
            if channel.end == 0 and not channel.is_state and self._channels.get(name) is channel:
                del self._channels[name]

    def _snapshot_plan(self, cursors: list[Cursor], resume: int | None) -> SnapshotPlan | None:
        providers: dict[str, tuple[SnapshotProvider, str]] = {}
        for cursor in cursors:
            name = cursor.channel.name
            for match, provider, event in self._snapshots.values():
                if match(name):
                    providers[name] = (provider, event)
                    break
        if not providers:
            return None
        first = self._backend.format_id(self._backend.latest_key()) if resume is None else None
        return SnapshotPlan(self._link, providers, first_id=first)

    def _snapshot_event(self, channel: str, data: Any, event: str, event_id: str) -> Event:
        text = data if type(data) is str else serialize(data, self._serializer)
        return trusted_event(
            text, event, event_id, None, channel, format_sse(text, event=event, id=event_id)
        )

    def _resume_key(self, names: Iterable[str], last_event_id: str | None) -> int | None:
        """The ordering key to resume after; -1 for an id we cannot place."""
        if last_event_id is None:
            return None
        key = self._backend.parse_id(last_event_id)
        if key is not None:
            return key
        for name in names:  # a caller-chosen id: find it in the retained history
            channel = self._channels.get(name)
            if channel is not None:
                position = channel.position_of_id(last_event_id)
                if position is not None:
                    return channel.seq_at(position)
        return -1

    def _gap_event(self, channel: Channel, reason: str, key: int) -> Event:
        return gap_event(channel.name, reason, self._backend.format_id(key))

    def _release(self, subscription: Subscription, channels: list[Channel]) -> None:
        for channel in channels:
            channel.subscribers.discard(subscription)
            self._maybe_unwatch(channel)
        for pattern in subscription.patterns:
            entry = self._patterns.get(pattern)
            if entry is not None:
                entry[1].discard(subscription)
                if not entry[1]:
                    del self._patterns[pattern]
                    self._backend.unwatch(pattern)
        self._subscriptions.discard(subscription)

    def _deliver(self, name: str, key: int, event: Event | None) -> None:
        """Append an event to its channel's log and wake its readers (the backend calls this).

        ``event=None``: the backend lost this channel's events up to ``key`` (e.g. Redis
        restarted empty); a gap signal goes into the log in their place.
        """
        channel = self._channels.get(name) or self._channel(name)
        if event is None:
            if channel.is_state:
                return  # the next value replaces whatever was lost
            channel.append(key, self._gap_event(channel, "lost", key))
            channel.has_gap_events = True
            channel.wake()
            return
        if channel.seqs and key <= channel.seqs[-1]:
            return  # already here (e.g. a state value set() kept): the Backend rules allow it
        channel.append(key, event)
        self._counters.events_sent += 1
        if self._observer is not None:
            self._observer.appended(event)
        channel.wake()
        if channel.listeners:
            _call_listeners(channel.listeners, event)


@final
class StoreLink:
    """What a store offers its subscriptions (``_subscription.StoreLink``, by public names)."""

    __slots__ = ("_store", "counters", "observer")

    def __init__(self, store: ChannelStore) -> None:
        self._store = store
        self.counters = store._counters
        self.observer = store._observer

    def gap_event(self, channel: Channel, reason: str, key: int) -> Event:
        return self._store._gap_event(channel, reason, key)

    async def history(
        self, channel: Channel, after: int, through: int
    ) -> tuple[int, list[tuple[int, Event]]] | None:
        return await self._store._backend.history(channel.name, after, through)

    def release(self, subscription: Subscription, channels: list[Channel]) -> None:
        self._store._release(subscription, channels)

    def snapshot_event(self, channel: str, data: Any, event: str, event_id: str) -> Event:
        return self._store._snapshot_event(channel, data, event, event_id)


def _call_listeners(listeners: list[_Listener], event: Event) -> None:
    errors: list[Exception] = []
    for listener in list(listeners):
        try:
            listener(event)
        except Exception as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup("listener callbacks failed", errors)


def _check_channel(name: object, *, pattern_ok: bool = False) -> None:
    if type(name) is not str:
        raise TypeError(f"channel name must be str, not {type(name).__name__}")
    if not name:
        raise ValueError("channel name must not be empty")
    if "*" in name and not pattern_ok:
        raise ValueError(f"channel name must not contain '*' (that makes a pattern): {name!r}")
    if not name.isprintable():
        raise ValueError(f"channel name must be printable (no control characters): {name!r}")


def _check_history(history: int, history_ttl: float | None) -> None:
    if type(history) is not int or history < 1:
        raise ValueError(f"history must be an int of at least 1, not {history!r}")
    if history_ttl is not None and not history_ttl > 0:
        raise ValueError(f"history_ttl must be positive seconds or None, not {history_ttl!r}")


def _check_policy(policy: object, max_lag: int | None) -> None:
    if policy not in ("disconnect", "drop_oldest"):
        raise ValueError(f"slow_consumer must be 'disconnect' or 'drop_oldest', not {policy!r}")
    if max_lag is not None and (type(max_lag) is not int or max_lag < 1):
        raise ValueError(f"max_lag must be a positive int or None, not {max_lag!r}")
