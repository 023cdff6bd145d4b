"""Slow consumers: disconnect, drop_oldest and max_lag; idle readers and cycles cost nothing."""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import anyio.to_thread
import pytest

from _store_helpers import data, gap_data
from sse_channels import (
    ChannelStore,
    Event,
    SlowConsumerError,
    Subscription,
)
from sse_channels.testing import drain, gap_reason

pytestmark = pytest.mark.anyio


# -- slow consumers ---------------------------------------------------------------------------


async def test_store_slow_consumer_disconnect_then_resume_gets_the_rest() -> None:
    store = ChannelStore(history=5)
    async with store.subscribe("room") as subscription:
        first = await store.send("room", "0")
        assert await drain(subscription) == [first]
        sent = [await store.send("room", str(i)) for i in range(1, 4)]
        assert await drain(subscription) == sent  # within history: nothing lost
        more = [await store.send("room", str(i)) for i in range(4, 10)]
        with pytest.raises(SlowConsumerError):
            await drain(subscription)
        assert subscription.close_reason == "slow_consumer"
        last = subscription.last_event_id
    assert last == sent[-1].id
    async with store.subscribe("room", last_event_id=last) as resumed:
        events = await drain(resumed)
    assert gap_reason(events[0]) == "expired"
    assert events[1:] == more[-5:]
    assert store.statistics().slow_consumer_disconnects == 1


async def test_store_slow_consumer_drop_oldest_signals_a_gap_and_goes_on() -> None:
    store = ChannelStore(history=5, slow_consumer="drop_oldest")
    async with store.subscribe("room") as subscription:
        sent = [await store.send("room", str(i)) for i in range(12)]
        gap, *rest = await drain(subscription)
        assert gap_data(gap) == {"reason": "slow_consumer", "channel": "room"}
        assert gap.id == sent[6].id
        assert rest == sent[-5:]
        live = await store.send("room", "live")
        assert await drain(subscription) == [live]
    stats = store.statistics()
    assert (stats.dropped, stats.gaps, stats.slow_consumer_disconnects) == (7, 1, 0)


async def test_store_slow_consumer_policy_per_subscription() -> None:
    store = ChannelStore(history=2)
    async with (
        store.subscribe("room", slow_consumer="drop_oldest") as dropping,
        store.subscribe("room") as disconnecting,
    ):
        for i in range(5):
            await store.send("room", str(i))
        assert data(await drain(dropping))[1:] == ["3", "4"]
        with pytest.raises(SlowConsumerError):
            await drain(disconnecting)


async def test_store_max_lag_disconnects_before_history_runs_out() -> None:
    store = ChannelStore(max_lag=5)
    async with store.subscribe("room") as subscription:
        for i in range(5):
            await store.send("room", str(i))
        assert len(await drain(subscription)) == 5
        for i in range(6):
            await store.send("room", str(i))
        with pytest.raises(SlowConsumerError):
            await drain(subscription)


async def test_store_max_lag_with_drop_oldest_keeps_the_newest() -> None:
    store = ChannelStore()
    async with store.subscribe("room", max_lag=3, slow_consumer="drop_oldest") as subscription:
        sent = [await store.send("room", str(i)) for i in range(10)]
        gap, *rest = await drain(subscription)
    assert gap_reason(gap) == "slow_consumer"
    assert gap.id == sent[6].id
    assert rest == sent[-3:]
    assert store.statistics().dropped == 7


async def test_store_idle_subscriber_costs_publisher_and_readers_nothing_and_memory_is_bounded(
    anyio_backend: str,
) -> None:
    total, history = 100_000, 1000
    store = ChannelStore(history=history)
    async with (
        store.subscribe("feed") as idle_disconnect,
        store.subscribe("feed", slow_consumer="drop_oldest") as idle_drop,
        store.subscribe("feed") as reader,
    ):
        received = 0

        async def read() -> None:
            nonlocal received
            async for batch in reader.batches():
                for event in batch:
                    assert event.data == str(received)  # every event, in order
                    received += 1
                if received == total:
                    return

        try:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read)
                    await anyio.wait_all_tasks_blocked()
                    for i in range(total):
                        if i == total // 2:
                            # Measure the second half: the history is full by then, so
                            # anything that grows per event or per subscriber shows.
                            gc.collect()
                            tracemalloc.start()
                            baseline = tracemalloc.get_traced_memory()[0]
                        await store.send("feed", i)
                        if i % 100 == 99:  # let the reader run, as a web app would
                            await anyio.sleep(0)
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        retained, peak_growth = current - baseline, peak - baseline

        assert received == total
        assert reader.close_reason is None
        # The history (1,000 events, ~340 kB) is what stays; a queue per idle subscriber
        # would have grown by 2 x 50,000 events (~30 MB) while measured.
        assert retained < 1_000_000, retained
        assert peak_growth < 2_000_000, peak_growth

        with pytest.raises(SlowConsumerError):
            await idle_disconnect.__anext__()
        gap, *rest = await idle_drop.receive_batch()
        assert gap_data(gap) == {"reason": "slow_consumer", "channel": "feed"}
        assert data(rest) == [str(i) for i in range(total - history, total)]
    stats = store.statistics()
    assert stats.slow_consumer_disconnects == 1
    assert stats.dropped == total - history
    print(
        f"\n[{anyio_backend}] 100k events, one idle subscriber per policy: over the last 50k "
        f"sends {retained / 1e3:.0f} kB retained, peak {peak_growth / 1e3:.0f} kB"
    )


# -- cycles: nothing left behind --------------------------------------------------------------


def live_tasks(anyio_backend: str) -> int:
    if anyio_backend == "asyncio":
        import asyncio

        return len(asyncio.all_tasks())
    import trio

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for n in task.child_nurseries for child in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return count(root)


async def test_store_subscribe_close_cycles_leave_no_subscriber_task_or_memory_behind(
    anyio_backend: str,
) -> None:
    # history=1: the log holds (almost) nothing, so what grows while measured is a leak.
    store = ChannelStore(history=1)
    last_id: list[str | None] = [None]

    async def cycle(i: int, tg: anyio.abc.TaskGroup) -> None:
        subscription = store.subscribe("room", "user:*", key="u", last_event_id=last_id[0])
        async with subscription:
            got: list[Event] = []
            received = anyio.Event()

            async def read(subscription: Subscription) -> None:
                async for event in subscription:  # ends when the subscription closes
                    got.append(event)
                    received.set()

            tg.start_soon(read, subscription)
            sent = await store.send("room", i)
            await received.wait()
            last_id[0] = sent.id
        assert got == [sent]

    async def cycles(count: int) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(count):
                await cycle(i, tg)

    await cycles(1_000)  # warm-up: the caches and free lists of the store and event loop
    gc.collect()
    tasks_before = live_tasks(anyio_backend)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await cycles(10_000)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    tasks_after = live_tasks(anyio_backend)
    stats = store.statistics()
    assert stats.subscribers == 0
    assert stats.watched_channels == 0
    assert stats.channels == 1  # "room"; "user:*" matched nothing and left nothing
    assert tasks_after == tasks_before
    # What may remain is the log's trimming slack (up to 17 events, ~6 kB); a leak of 4
    # bytes per cycle would exceed the bound, a leaked subscription 100 times over.
    assert growth < 40_000, growth
    print(
        f"\n[{anyio_backend}] 10,000 subscribe/read/close cycles: {growth} bytes retained, "
        f"tasks {tasks_before} -> {tasks_after}, subscribers {stats.subscribers}"
    )
