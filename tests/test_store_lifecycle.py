"""Revoke, aclose, statistics and when the backend is started and watched."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest

from sse_channels import (
    ChannelStore,
    Event,
    StoreClosedError,
    Subscription,
)
from sse_channels.backends import Backend, MemoryBackend
from sse_channels.testing import collect, drain, gap_reason

if TYPE_CHECKING:
    from sse_channels.backends import Deliver

pytestmark = pytest.mark.anyio


# -- revoke and aclose ------------------------------------------------------------------------


async def test_store_revoke_by_key_ends_those_readers() -> None:
    store = ChannelStore()
    ada = store.subscribe("room", key="ada")
    ada_too = store.subscribe("user:ada", key="ada")
    grace = store.subscribe("room", key="grace")
    ended: list[str] = []

    async def read(subscription: Subscription) -> None:
        async for _ in subscription:
            pass
        ended.append(subscription.close_reason or "")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for subscription in (ada, ada_too):
                tg.start_soon(read, subscription)
            await anyio.wait_all_tasks_blocked()
            assert store.revoke(key="ada") == 2
    assert ended == ["revoked", "revoked"]
    assert not grace.closed
    grace.close()
    assert store.statistics().revoked == 2


async def test_store_revoke_by_channel_and_by_both() -> None:
    store = ChannelStore()
    one = store.subscribe("room", "news", key="u1")
    two = store.subscribe("news", key="u2")
    three = store.subscribe("room", key="u2")
    assert store.revoke(channel="news", key="u2") == 1
    assert (one.close_reason, two.close_reason, three.close_reason) == (None, "revoked", None)
    assert store.revoke(channel="room") == 2
    assert (one.close_reason, three.close_reason) == ("revoked", "revoked")
    assert store.revoke(key="nobody") == 0
    with pytest.raises(ValueError):
        store.revoke()


async def test_store_aclose_ends_every_subscription_and_refuses_new_work() -> None:
    store = ChannelStore()
    subscriptions = [store.subscribe("room"), store.subscribe("user:*"), store.subscribe("a")]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for subscription in subscriptions:
                tg.start_soon(collect, subscription)
            await anyio.wait_all_tasks_blocked()
            await store.aclose()
    assert [s.close_reason for s in subscriptions] == ["store_closed"] * 3
    assert store.closed
    with pytest.raises(StoreClosedError):
        await store.send("room", "x")
    with pytest.raises(StoreClosedError):
        await store.set("room", 1)
    with pytest.raises(StoreClosedError):
        store.subscribe("room")
    await store.aclose()  # idempotent
    assert store.statistics().subscribers == 0


async def test_store_listen_on_a_closed_store_raises_store_closed_error() -> None:
    store = ChannelStore()
    await store.set("count", 1)
    await store.aclose()
    calls: list[Event] = []
    with pytest.raises(StoreClosedError):
        store.listen("count", calls.append)
    assert calls == []


async def test_store_async_with_closes_the_store() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("room")
    assert store.closed
    assert subscription.close_reason == "store_closed"


async def test_store_closed_error_says_a_closed_store_cannot_be_reopened_and_what_to_do() -> None:
    # Regression (issue 15): a module-level store entered with ``async with`` in one test
    # failed the next test with "the store is closed" and no hint.
    store = ChannelStore()
    async with store:
        pass
    hint = r"cannot be reopened: create a new ChannelStore \(in tests, one per test"
    with pytest.raises(StoreClosedError, match=hint):
        async with store:
            pass
    with pytest.raises(StoreClosedError, match=hint):
        await store.send("room", "x")
    with pytest.raises(StoreClosedError, match=hint):
        store.subscribe("room")
    with pytest.raises(StoreClosedError, match=hint):
        store.listen("room", print)


# -- statistics and lazy watching ---------------------------------------------------------------


async def test_store_statistics_leave_gap_signals_out_of_events_delivered() -> None:
    store = ChannelStore(history=3, slow_consumer="drop_oldest")
    async with store.subscribe("a") as behind, store.subscribe("a", max_lag=2) as lagging:
        for i in range(5):
            await store.send("a", str(i))
        assert [gap_reason(e) for e in await drain(behind)] == ["slow_consumer", *[None] * 3]
        assert [gap_reason(e) for e in await drain(lagging)] == ["slow_consumer", None, None]
    stats = store.statistics()
    assert (stats.events_delivered, stats.gaps, stats.dropped) == (5, 2, 5)


async def test_store_statistics_count_what_happened() -> None:
    store = ChannelStore(history=3)
    async with store.subscribe("a") as reader, store.subscribe("b", "c") as other:
        for i in range(2):
            await store.send("a", str(i))
        await store.send("b", "x")
        stats = store.statistics()
        assert (stats.channels, stats.subscribers, stats.watched_channels) == (3, 2, 3)
        assert len(await drain(reader)) == 2
        assert len(await drain(other)) == 1
    async with store.subscribe("a", last_event_id="nope") as resumed:
        await drain(resumed)
    stats = store.statistics()
    assert (stats.events_sent, stats.events_delivered) == (3, 3)  # gap signals not counted
    assert (stats.gaps, stats.replayed, stats.dropped) == (1, 0, 0)
    assert (stats.subscribers, stats.watched_channels, stats.channels) == (0, 0, 2)
    assert stats.backend == {"backend": "memory", "connected": True}


async def test_store_counts_a_resume_when_its_first_batch_is_handed_out_not_before() -> None:
    store = ChannelStore()
    sent = [await store.send("room", str(i)) for i in range(4)]
    unread = store.subscribe("room", last_event_id="not-ours")
    unread.close()  # closed before its first read: nothing was handed out
    stats = store.statistics()
    assert (stats.gaps, stats.replayed, stats.events_delivered) == (0, 0, 0)
    async with store.subscribe("room", last_event_id=sent[0].id) as resumed:
        live = await store.send("room", "live")  # after subscribe(): live, not replayed
        assert await drain(resumed) == [*sent[1:], live]
    stats = store.statistics()
    assert (stats.gaps, stats.replayed, stats.events_delivered) == (0, 3, 4)


async def test_store_counts_a_lost_gap_once_per_reader_that_receives_it() -> None:
    backend = SpyBackend()
    store = ChannelStore(backend)
    async with store.subscribe("a") as one, store.subscribe("a", "b") as two:
        before = await store.send("a", "before")
        gone = await store.send("elsewhere", "takes a key")
        key = backend.parse_id(gone.id or "")
        assert key is not None
        backend.lose("a", key)  # say "a" lost an event with that key
        after = await store.send("a", "after")
        assert [gap_reason(e) for e in await drain(one)] == [None, "lost", None]
        events = await drain(two)
        assert [gap_reason(e) for e in events] == [None, "lost", None]
        assert (events[0], events[2]) == (before, after)
    stats = store.statistics()
    assert (stats.gaps, stats.events_delivered, stats.events_sent) == (2, 4, 3)


class SpyBackend:
    """A MemoryBackend that records watch and unwatch calls."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.calls: list[tuple[str, str]] = []

    def attach(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.inner.attach(deliver)

    def lose(self, channel: str, key: int) -> None:
        """Report, as a networked backend would, that ``channel`` lost events up to ``key``."""
        self.deliver(channel, key, None)

    async def start(self, task_group: Any = None) -> None:
        await self.inner.start()

    async def publish(self, channel: str, event: Event) -> Event:
        return await self.inner.publish(channel, event)

    def publish_sync(self, channel: str, event: Event) -> Event | None:
        return self.inner.publish_sync(channel, event)

    def format_id(self, key: int) -> str:
        return self.inner.format_id(key)

    def parse_id(self, event_id: str) -> int | None:
        return self.inner.parse_id(event_id)

    def latest_key(self) -> int:
        return self.inner.latest_key()

    async def history(
        self, channel: str, after: int, through: int
    ) -> tuple[int, list[tuple[int, Event]]] | None:
        return await self.inner.history(channel, after, through)

    def watch(self, channel: str) -> int:
        self.calls.append(("watch", channel))
        return self.inner.watch(channel)

    def unwatch(self, channel: str) -> None:
        self.calls.append(("unwatch", channel))

    def statistics(self) -> dict[str, Any]:
        return self.inner.statistics()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_store_watches_a_channel_from_its_first_subscriber_to_its_last() -> None:
    backend = SpyBackend()
    assert isinstance(backend, Backend)
    store = ChannelStore(backend)
    assert store.statistics().watched_channels == 0
    first = store.subscribe("room")
    assert store.statistics().watched_channels == 1
    second = store.subscribe("room")
    unsubscribe = store.listen("room", print)
    first.close()
    second.close()
    assert store.statistics().watched_channels == 1
    unsubscribe()
    assert store.statistics().watched_channels == 0
    assert [call for call in backend.calls if call[1] == "room"] == [
        ("watch", "room"),
        ("unwatch", "room"),
    ]


class SlowStartBackend(SpyBackend):
    """A backend that needs ``start()`` (which yields, and can fail) before it can publish."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.starts = 0
        self.started = False

    async def start(self, task_group: Any = None) -> None:
        self.starts += 1
        await anyio.sleep(0.01)
        if self.failures:
            self.failures -= 1
            raise OSError("cannot connect")
        self.started = True

    async def publish(self, channel: str, event: Event) -> Event:
        if not self.started:
            raise RuntimeError("publish before start")
        return await super().publish(channel, event)


async def test_store_backend_start_that_failed_is_tried_again_by_the_next_send() -> None:
    # Regression: the store counted the backend as started before start() succeeded.
    backend = SlowStartBackend(failures=1)
    store = ChannelStore(backend)
    with pytest.raises(OSError, match="cannot connect"):
        await store.send("room", "first")
    assert (await store.send("room", "second")).data == "second"
    assert backend.starts == 2


async def test_store_async_with_whose_start_failed_leaves_the_store_unstarted() -> None:
    backend = SlowStartBackend(failures=1)
    store = ChannelStore(backend)
    with pytest.raises(OSError, match="cannot connect"):
        async with store:
            pass
    assert (await store.send("room", "x")).data == "x"
    assert backend.starts == 2


async def test_store_concurrent_first_sends_wait_for_the_backend_to_start() -> None:
    backend = SlowStartBackend()
    store = ChannelStore(backend)
    sent: list[Event] = []

    async def send(value: str) -> None:
        sent.append(await store.send("room", value))

    async with anyio.create_task_group() as group:
        for value in ("a", "b", "c"):
            group.start_soon(send, value)
    assert sorted(event.data for event in sent) == ["a", "b", "c"]
    assert backend.starts == 1


async def test_store_send_sync_starts_the_backend_as_send_does() -> None:
    backend = SlowStartBackend()
    store = ChannelStore(backend)
    async with store.subscribe("jobs") as subscription:  # the loop is known; not started
        event = await anyio.to_thread.run_sync(lambda: store.send_sync("jobs", "done"))
        assert await collect(subscription, 1, timeout=5) == [event]
