from __future__ import annotations

import gc

import anyio
import pytest

from sse_channels import ChannelStore, Event, SlowConsumerError, Subscription
from sse_channels.testing import collect, drain, gap_reason

pytestmark = pytest.mark.anyio


def data(events: list[Event]) -> list[str]:
    return [event.data for event in events]


async def test_subscription_iteration_ends_when_closed_from_another_task() -> None:
    store = ChannelStore()
    received: list[str] = []
    async with store.subscribe("room") as subscription:

        async def read() -> None:
            async for event in subscription:
                received.append(event.data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await store.send("room", "one")
            await anyio.wait_all_tasks_blocked()
            await subscription.aclose()
    assert received == ["one"]
    assert subscription.closed
    assert subscription.close_reason == "closed"


async def test_subscription_async_with_closes_on_exit() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        assert not subscription.closed
        assert store.statistics().subscribers == 1
    assert subscription.close_reason == "closed"
    assert store.statistics().subscribers == 0


async def test_subscription_close_is_idempotent_and_keeps_the_first_reason() -> None:
    store = ChannelStore()
    subscription = store.subscribe("room")
    store.revoke(key=None, channel="room")
    subscription.close()
    await subscription.aclose()
    assert subscription.close_reason == "revoked"


async def test_subscription_after_close_iteration_stops_at_once() -> None:
    store = ChannelStore()
    subscription = store.subscribe("room")
    subscription.close()
    await store.send("room", "late")
    assert [event async for event in subscription] == []
    assert await subscription.receive_batch() == []


async def test_subscription_revoked_mid_batch_hands_out_nothing_more_but_resumes() -> None:
    store = ChannelStore()
    subscription = store.subscribe("room")
    sent = [await store.send("room", str(i)) for i in range(3)]
    assert await subscription.__anext__() == sent[0]  # the other two wait in its batch
    store.revoke(channel="room")
    assert [event async for event in subscription] == []
    assert subscription.last_event_id == sent[0].id
    async with store.subscribe("room", last_event_id=subscription.last_event_id) as resumed:
        assert await drain(resumed) == sent[1:]


async def test_subscription_resumed_but_not_read_yet_reports_the_id_it_resumed_from() -> None:
    # Resuming again from its last_event_id before it handed anything out must not skip
    # what was sent meanwhile (None would mean "live only").
    store = ChannelStore()
    mark = await store.send("room", "seen")
    subscription = store.subscribe("room", last_event_id=mark.id)
    assert subscription.last_event_id == mark.id
    subscription.close()
    sent = [await store.send("room", str(i)) for i in range(2)]
    async with store.subscribe("room", last_event_id=subscription.last_event_id) as again:
        assert await drain(again) == sent


async def test_subscription_hands_out_events_pending_before_the_first_read() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        for i in range(3):
            await store.send("room", str(i))
        assert data(await collect(subscription, 3)) == ["0", "1", "2"]


async def test_subscription_receive_batch_returns_everything_pending_at_once() -> None:
    store = ChannelStore()
    async with store.subscribe("a", "b") as subscription:
        await store.send("a", "1")
        await store.send("b", "2")
        await store.send("a", "3")
        assert data(await subscription.receive_batch()) == ["1", "2", "3"]


async def test_subscription_receive_batch_includes_what_iteration_left_in_its_buffer() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        for i in range(3):
            await store.send("room", str(i))
        assert (await subscription.__anext__()).data == "0"
        await store.send("room", "3")
        assert data(await subscription.receive_batch()) == ["1", "2", "3"]


async def test_subscription_batches_end_when_it_is_closed() -> None:
    store = ChannelStore()
    batches: list[list[str]] = []
    async with store.subscribe("room") as subscription:

        async def read() -> None:
            async for batch in subscription.batches():
                batches.append(data(batch))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await store.send("room", "1")
            await store.send("room", "2")
            await anyio.wait_all_tasks_blocked()
            await store.send("room", "3")
            await anyio.wait_all_tasks_blocked()
            subscription.close()
    assert batches == [["1", "2"], ["3"]]


async def test_subscription_batches_can_be_left_early_without_a_warning() -> None:
    # Regression: batches() was an async generator, which trio reports with a
    # ResourceWarning when it is dropped before it is exhausted.
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        await store.send("room", "1")
        async for batch in subscription.batches():
            assert data(batch) == ["1"]
            break
        gc.collect()  # filterwarnings=error turns a warning here into a failure


async def test_subscription_last_event_id_is_the_id_of_the_last_event_handed_out() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        assert subscription.last_event_id is None
        first = await store.send("room", "1")
        second = await store.send("room", "2")
        await subscription.__anext__()
        assert subscription.last_event_id == first.id
        await subscription.receive_batch()
        assert subscription.last_event_id == second.id


async def test_subscription_last_event_id_follows_gap_signals_too() -> None:
    store = ChannelStore()
    async with store.subscribe("room", last_event_id="from-a-previous-life") as subscription:
        gap = await subscription.__anext__()
        assert gap_reason(gap) == "unknown_id"
        assert subscription.last_event_id == gap.id


async def test_subscription_channels_lists_names_and_channels_patterns_found() -> None:
    store = ChannelStore()
    await store.send("user:1", "x")
    async with store.subscribe("room", "user:*") as subscription:
        assert sorted(subscription.channels) == ["room", "user:1"]
        await store.send("user:2", "y")
        assert sorted(subscription.channels) == ["room", "user:1", "user:2"]
        assert subscription.patterns == ("user:*",)


async def test_subscription_repr_names_its_channels_and_state() -> None:
    store = ChannelStore()
    subscription = store.subscribe("room", "user:*")
    assert repr(subscription) == "<Subscription ['room', 'user:*'] open>"
    subscription.close()
    assert repr(subscription) == "<Subscription ['room', 'user:*'] closed>"


async def test_subscription_unclosed_warns_resource_warning() -> None:
    store = ChannelStore()
    held = [store.subscribe("room")]
    with pytest.warns(ResourceWarning, match="unclosed <Subscription"):
        forget(held)


def forget(held: list[Subscription]) -> None:
    held.clear()
    gc.collect()


async def test_subscription_closed_does_not_warn() -> None:
    store = ChannelStore()
    subscription = store.subscribe("room")
    subscription.close()
    del subscription
    gc.collect()  # filterwarnings=error would turn a ResourceWarning into a failure


async def test_subscription_cancelling_a_waiting_reader_loses_nothing() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        with anyio.move_on_after(0.01) as scope:
            await subscription.__anext__()
        assert scope.cancelled_caught
        with anyio.move_on_after(0.01) as scope:
            await subscription.receive_batch()
        assert scope.cancelled_caught
        await store.send("room", "after")
        assert data(await collect(subscription, 1)) == ["after"]


async def test_subscription_cancelled_in_the_same_tick_as_its_wake_up_loses_nothing() -> None:
    store = ChannelStore()
    received: list[str] = []
    async with store.subscribe("room") as subscription:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def read() -> None:
                with scope:
                    received.append((await subscription.__anext__()).data)

            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await store.send("room", "woken-and-cancelled")
            scope.cancel()  # before the reader ran: it gets the event, or the event stays
        received += data(await drain(subscription))
    assert received == ["woken-and-cancelled"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_subscription_reader_cancelled_after_its_wake_up_passes_it_on() -> None:
    # The publisher wakes one parked reader, which wakes the rest. A plain asyncio cancel
    # arriving after that wake-up (anyio and trio let the woken reader finish instead)
    # must still pass the wake-up on.
    import asyncio

    store = ChannelStore()
    subscriptions = [store.subscribe("room") for _ in range(3)]
    received: list[int] = []

    async def read(index: int) -> None:
        await subscriptions[index].__anext__()
        received.append(index)

    try:
        tasks = [asyncio.create_task(read(index)) for index in range(3)]
        await anyio.wait_all_tasks_blocked()
        await store.send("room", "x")
        tasks[0].cancel()  # the first parked reader: the one the publisher woke
        with anyio.fail_after(5):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert received == [1, 2]
        assert data(await drain(subscriptions[0])) == ["x"]
    finally:
        for subscription in subscriptions:
            subscription.close()


async def test_subscription_one_send_wakes_every_parked_reader() -> None:
    store = ChannelStore()
    subscriptions = [store.subscribe("room") for _ in range(100)]
    received: list[str] = []

    async def read(subscription: Subscription) -> None:
        received.append((await subscription.__anext__()).data)

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for subscription in subscriptions:
                    tg.start_soon(read, subscription)
                await anyio.wait_all_tasks_blocked()
                await store.send("room", "all")
    finally:
        for subscription in subscriptions:
            subscription.close()
    assert received == ["all"] * 100


async def test_subscription_a_cancelled_reader_does_not_swallow_the_others_wake_up() -> None:
    # The publisher wakes one parked reader, which wakes the rest: the first one being
    # cancelled before it runs must still pass the wake-up on.
    store = ChannelStore()
    subscriptions = [store.subscribe("room") for _ in range(5)]
    scopes = [anyio.CancelScope() for _ in subscriptions]
    received: list[int] = []

    async def read(index: int) -> None:
        with scopes[index]:
            await subscriptions[index].__anext__()
            received.append(index)

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for index in range(5):
                    tg.start_soon(read, index)
                await anyio.wait_all_tasks_blocked()
                await store.send("room", "x")
                for scope in scopes[:2]:
                    scope.cancel()
    finally:
        for subscription in subscriptions:
            subscription.close()
    # Readers cancelled after the wake-up may still have finished their read; the others must.
    assert {2, 3, 4} <= set(received)


async def test_subscription_closing_wakes_its_parked_reader() -> None:
    store = ChannelStore()
    subscription = store.subscribe("a", "b")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                assert [event async for event in subscription] == []

            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            subscription.close()


async def test_subscription_slow_consumer_error_comes_even_if_the_publisher_stopped() -> None:
    # Regression: the reader that detected its own lag used to park and wait for an event
    # that would never come, instead of raising.
    store = ChannelStore(history=10)
    async with store.subscribe("room") as subscription:
        for i in range(30):
            await store.send("room", str(i))
        with anyio.fail_after(5), pytest.raises(SlowConsumerError, match="resume from"):
            await subscription.__anext__()
        assert subscription.close_reason == "slow_consumer"


async def test_subscription_slow_consumer_error_on_a_parked_multi_channel_reader() -> None:
    store = ChannelStore(history=10)
    async with store.subscribe("a", "b") as subscription:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    with pytest.raises(SlowConsumerError):
                        await subscription.__anext__()

                tg.start_soon(read)
                await anyio.wait_all_tasks_blocked()
                # The reader wakes only after the whole burst: it is 30 behind on "a".
                for i in range(30):
                    await store.send("a", str(i))


async def test_subscription_disconnected_on_one_channel_hands_out_no_later_events() -> None:
    # Regression: a multi-channel subscription that fell behind on "a" still handed out the
    # newer event of "b"; its last id then lay past the retained events of "a", and a
    # resume from it skipped them without a gap signal.
    store = ChannelStore(history=10)
    async with store.subscribe("a", "b") as subscription:
        for i in range(30):
            await store.send("a", f"a{i}")
        await store.send("b", "b0")
        with pytest.raises(SlowConsumerError):
            await subscription.receive_batch()
        assert subscription.last_event_id is None


async def test_subscription_last_event_id_tracks_mixed_iteration_and_batches() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        sent = [await store.send("room", str(n)) for n in range(3)]
        assert (await subscription.__anext__()).id == sent[0].id
        assert subscription.last_event_id == sent[0].id
        assert data(await subscription.receive_batch()) == ["1", "2"]
        assert subscription.last_event_id == sent[2].id
        later = await store.send("room", "3")
        assert (await subscription.__anext__()).id == later.id
        assert subscription.last_event_id == later.id
