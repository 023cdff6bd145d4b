"""Subscription: a cursor per channel, read as an async iterator of events."""

from __future__ import annotations

import asyncio
import warnings
from operator import length_hint
from typing import TYPE_CHECKING, Any, Literal, final

import anyio

from ._exceptions import SlowConsumerError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from types import TracebackType

    from typing_extensions import Self

    from ._event import Event
    from ._store import ChannelStore

__all__ = ["SlowConsumerPolicy", "Subscription"]

SlowConsumerPolicy = Literal["disconnect", "drop_oldest"]

# Why a subscription ended; ``None`` while it is open.
CloseReason = Literal["closed", "store_closed", "revoked", "slow_consumer"]


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
        "_entries",
        "_fetches",
        "_iter",
        "_last_id",
        "_max_lag",
        "_next",
        "_policy",
        "_relay",
        "_store",
        "_waiter",
        "close_reason",
        "key",
        "patterns",
    )

    def __init__(
        self,
        store: ChannelStore,
        *,
        key: str | None,
        policy: SlowConsumerPolicy,
        max_lag: int | None,
        patterns: tuple[str, ...],
    ) -> None:
        self._store = store
        #: One ``[channel, cursor]`` pair per channel read (patterns add pairs as channels appear).
        self._entries: list[list[Any]] = []
        #: Events read but not handed out yet, then ``None`` (see ``_set_buffer``).
        self._buffer: list[Event | None] = [None]
        #: Resume reads to make from the backend's history before the first batch.
        self._fetches: tuple[list[Any], list[tuple[int, Event]]] | None = None
        #: ``__next__`` of an iterator over ``_buffer``: the cheapest way to hand out events.
        self._iter: Iterator[Event | None] = iter([None])
        self._next: Callable[[], Event | None] = self._iter.__next__
        self._last_id: str | None = None
        self._policy = policy
        self._max_lag = max_lag
        self._waiter: asyncio.Future[None] | anyio.Event | None = None
        self._relay: dict[Subscription, None] | None = None
        #: Why the subscription ended (``"closed"``, ``"store_closed"``, ``"revoked"``,
        #: ``"slow_consumer"``), or ``None`` while it is open.
        self.close_reason: CloseReason | None = None
        #: The key given to ``subscribe()`` (e.g. a user id), used to revoke it.
        self.key = key
        self.patterns = patterns

    # -- reading -----------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """The names of the channels this subscription reads now."""
        return [entry[0].name for entry in self._entries]

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
            batch = await self._next_batch()
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
        size = len(self._buffer) - 1
        return min(size, size + 1 - length_hint(self._iter))

    def _set_buffer(self, batch: list[Event]) -> None:
        # A ``None`` after the last event ends the buffer without a StopIteration (raising
        # one per batch costs more than the rest of __anext__). ``batch`` is ours to extend.
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
        self._remember_last_id()
        batch: list[Event] = self._buffer[self._consumed() : -1]  # type: ignore[assignment]
        self._set_buffer([])
        if batch:
            if self.close_reason is None:
                batch += self._store._collect(self)
        else:
            batch = await self._next_batch()
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
        if self._fetches is not None and self.close_reason is None:
            batch = await self._store._replay(self)
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
            batch = self._store._collect(self)
            if batch:
                return batch
            if self.close_reason is None:  # _collect may have disconnected it: don't park
                await self._park()

    # -- waiting -----------------------------------------------------------------------

    async def _park(self) -> None:
        entries = self._entries
        for entry in entries:
            entry[0].parked[self] = None
        try:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not asyncio: trio, via anyio's portable event
                event = self._waiter = anyio.Event()
                await event.wait()
            else:
                future = self._waiter = loop.create_future()
                await future
        finally:
            self._waiter = None
            relay, self._relay = self._relay, None
            if relay:
                for other in relay:
                    if other is not self:
                        other._ring(None)
            if len(entries) > 1:
                for entry in entries:
                    entry[0].parked.pop(self, None)

    def _ring(self, relay: dict[Subscription, None] | None) -> bool:
        """Wake this subscription if it waits; it then wakes the rest of ``relay``."""
        waiter = self._waiter
        if waiter is None:
            return False
        if isinstance(waiter, anyio.Event):
            if waiter.is_set():
                return False
            waiter.set()
        else:
            if waiter.done():
                return False
            waiter.set_result(None)
        if relay is not None:
            self._relay = relay
        return True

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
        self._store._release(self)
        self._ring(None)

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
