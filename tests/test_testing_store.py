from __future__ import annotations

import anyio
import pytest

from sse_channels import (
    ChannelStore,
    Event,
    SlowConsumerError,
    StoreClosedError,
    SubscriptionClosed,
)
from sse_channels.testing import (
    ChannelRecorder,
    CollectTimeoutError,
    assert_events,
    collect,
    drain,
    gap_reason,
)

pytestmark = pytest.mark.anyio


# -- collect ----------------------------------------------------------------------------------


async def test_collect_returns_exactly_n_and_leaves_the_rest_pending() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        sent = [await store.send("room", str(i)) for i in range(5)]
        assert await collect(subscription, 2) == sent[:2]
        assert await collect(subscription, 0) == []
        assert await drain(subscription) == sent[2:]


async def test_collect_waits_for_events_sent_later() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription, anyio.create_task_group() as tg:

        async def send_later() -> None:
            await anyio.sleep(0.01)
            await store.send("room", "late")

        tg.start_soon(send_later)
        assert [e.data for e in await collect(subscription, 1, timeout=5)] == ["late"]


async def test_collect_timeout_raises_timeout_error_with_what_arrived() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        sent = await store.send("room", "only one")
        with pytest.raises(TimeoutError) as caught:
            await collect(subscription, 3, timeout=0.01)
    error = caught.value
    assert isinstance(error, CollectTimeoutError)
    assert error.events == [sent]
    assert error.expected == 3
    assert "got 1: [Event(data='only one'" in str(error)


async def test_collect_until_the_end_with_n_none() -> None:
    store = ChannelStore()
    subscription = store.subscribe("room")
    for i in range(3):
        await store.send("room", str(i))
    subscription.close()
    assert await collect(subscription) == []  # closed: pending events are not handed out
    async with store.subscribe("room") as other, anyio.create_task_group() as tg:
        sent = [await store.send("room", str(i)) for i in range(3)]

        async def close_soon() -> None:
            await anyio.wait_all_tasks_blocked()
            other.close()

        tg.start_soon(close_soon)
        assert await collect(other, None, timeout=5) == sent


async def test_collect_until_the_end_times_out_if_it_never_ends() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        with pytest.raises(CollectTimeoutError, match="the end of the subscription"):
            await collect(subscription, timeout=0.01)


async def test_collect_subscription_ending_early_raises_subscription_closed() -> None:
    store = ChannelStore()
    async with store.subscribe("room", key="ada") as subscription, anyio.create_task_group() as tg:
        await store.send("room", "one")

        async def revoke_soon() -> None:
            await anyio.wait_all_tasks_blocked()
            store.revoke(key="ada")

        tg.start_soon(revoke_soon)
        with pytest.raises(SubscriptionClosed, match=r"ended \(revoked\) after 1 of 2") as caught:
            await collect(subscription, 2, timeout=5)
    assert caught.value.reason == "revoked"


async def test_collect_slow_consumer_error_propagates() -> None:
    store = ChannelStore(history=2)
    async with store.subscribe("room") as subscription:
        for i in range(5):
            await store.send("room", str(i))
        with pytest.raises(SlowConsumerError):
            await collect(subscription, 1)


async def test_collect_rejects_a_negative_count() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        with pytest.raises(ValueError):
            await collect(subscription, -1)


# -- drain ------------------------------------------------------------------------------------


async def test_drain_returns_what_is_pending_without_waiting() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        with anyio.fail_after(1):
            assert await drain(subscription) == []
        sent = [await store.send("room", str(i)) for i in range(3)]
        assert await drain(subscription) == sent
        assert await drain(subscription) == []
        # It did not break the subscription: it still receives.
        later = await store.send("room", "later")
        assert await collect(subscription, 1) == [later]


async def test_drain_raises_slow_consumer_error() -> None:
    store = ChannelStore(history=2)
    async with store.subscribe("room") as subscription:
        for i in range(5):
            await store.send("room", str(i))
        with pytest.raises(SlowConsumerError):
            await drain(subscription)


# -- gap_reason and assert_events ---------------------------------------------------------------


async def test_gap_reason_tells_gap_signals_from_events() -> None:
    store = ChannelStore()
    ordinary = await store.send("room", '{"reason": "not a gap"}')
    assert gap_reason(ordinary) is None
    async with store.subscribe("room", last_event_id="unknown") as subscription:
        (gap,) = await drain(subscription)
    assert gap_reason(gap) == "unknown_id"


def test_assert_events_accepts_data_fields_and_events() -> None:
    events = [Event("a", event="x", id="1", channel="c"), Event("b")]
    assert_events(events, ["a", "b"])
    assert_events(events, [{"event": "x", "channel": "c"}, {"data": "b", "id": None}])
    assert_events(events, [events[0], "b"])
    assert_events([], [])


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        (["a", "c"], "event 1 differs"),
        (["a"], "got 2 events, expected 1"),
        (["a", "b", "c"], "got 2 events, expected 3"),
        ([{"event": "y"}, "b"], "event 0 differs"),
        ([Event("a"), "b"], "event 0 differs"),
    ],
)
def test_assert_events_fails_with_both_lists(expected: list[object], message: str) -> None:
    events = [Event("a", event="x"), Event("b")]
    with pytest.raises(AssertionError, match=message) as caught:
        assert_events(events, expected)  # type: ignore[arg-type]
    assert "got:      [Event(data='a'" in str(caught.value)


def test_assert_events_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="no field"):
        assert_events([Event("a")], [{"payload": "a"}])


# -- ChannelRecorder ------------------------------------------------------------------------------


async def test_recorder_records_what_went_to_which_channel() -> None:
    store = ChannelStore()
    await store.send("user:0", "before the recorder")
    with ChannelRecorder(store) as recorder:
        await store.send("user:2", {"online": "ada"})
        await store.send("user:3", "hello")
        await store.set("count", 1)
        await store.send("user:2", "again")
        assert recorder.channels == ["user:2", "user:3", "count"]
        assert recorder.data("user:2") == ['{"online":"ada"}', "again"]
        assert [e.data for e in recorder.sent_to("user:3")] == ["hello"]
        assert recorder.data("nobody") == []
        assert len(recorder.events) == 4
    await store.send("user:2", "after the recorder")
    assert recorder.closed
    assert recorder.data("user:2") == ['{"online":"ada"}', "again"]


async def test_recorder_keeps_what_was_sent_just_before_it_closed() -> None:
    store = ChannelStore()
    recorder = ChannelRecorder(store)
    await store.send("room", "last")
    await recorder.aclose()
    assert recorder.data("room") == ["last"]


async def test_recorder_limited_to_patterns() -> None:
    store = ChannelStore()
    async with ChannelRecorder(store, "user:*", "room") as recorder:
        await store.send("user:1", "a")
        await store.send("other", "b")
        await store.send("room", "c")
        assert [e.data for e in recorder.events] == ["a", "c"]


async def test_recorder_clear_forgets_only_what_came_before() -> None:
    store = ChannelStore()
    with ChannelRecorder(store) as recorder:
        await store.send("room", "old")
        recorder.clear()
        await store.send("room", "new")
        assert recorder.data("room") == ["new"]


async def test_recorder_that_fell_behind_the_history_says_so() -> None:
    store = ChannelStore(history=3)
    with ChannelRecorder(store) as recorder:
        for i in range(10):
            await store.send("room", str(i))
        with pytest.raises(AssertionError, match="missed events on 'room'"):
            recorder.events  # noqa: B018


async def test_recorder_is_a_subscriber_and_never_disconnected_for_lag() -> None:
    store = ChannelStore(max_lag=2)
    with ChannelRecorder(store) as recorder:
        for i in range(5):
            await store.send("room", str(i))
        assert store.statistics().subscribers == 1
        assert recorder.data("room") == ["0", "1", "2", "3", "4"]
        assert repr(recorder) == "<ChannelRecorder 5 events recording>"
    assert store.statistics().subscribers == 0
    assert repr(recorder) == "<ChannelRecorder 5 events closed>"


async def test_recorder_wait_for_events_sent_later() -> None:
    store = ChannelStore()
    async with ChannelRecorder(store) as recorder, anyio.create_task_group() as tg:

        async def send_later() -> None:
            await anyio.sleep(0.01)
            await store.send("a", "1")
            await anyio.sleep(0.01)
            await store.send("b", "2")

        tg.start_soon(send_later)
        events = await recorder.wait_for(2, timeout=5)
        assert [e.data for e in events] == ["1", "2"]
        with pytest.raises(CollectTimeoutError):
            await recorder.wait_for(3, timeout=0.01)


async def test_recorder_wait_for_on_a_closed_recorder_says_so_at_once() -> None:
    store = ChannelStore()
    recorder = ChannelRecorder(store)
    await store.send("a", "1")
    recorder.close()
    with anyio.fail_after(1), pytest.raises(SubscriptionClosed, match="1 of 2 events") as info:
        await recorder.wait_for(2, timeout=30)
    assert info.value.reason == "closed"


async def test_recorder_wait_for_ends_when_the_store_closes_meanwhile() -> None:
    store = ChannelStore()
    async with ChannelRecorder(store) as recorder, anyio.create_task_group() as tg:

        async def close_later() -> None:
            await store.send("a", "1")
            await anyio.sleep(0.01)
            await store.aclose()

        tg.start_soon(close_later)
        with anyio.fail_after(1), pytest.raises(SubscriptionClosed) as info:
            await recorder.wait_for(2, timeout=30)
        assert info.value.reason == "store_closed"
        assert [e.data for e in recorder.events] == ["1"]


async def test_recorder_on_a_closed_store_raises() -> None:
    store = ChannelStore()
    await store.aclose()
    with pytest.raises(StoreClosedError):
        ChannelRecorder(store)


async def test_recorder_records_every_value_of_a_state_channel() -> None:
    store = ChannelStore()
    with ChannelRecorder(store) as recorder:
        await store.set("count", 1)
        await store.set("count", 2)
        await store.update("count", lambda n: n + 1)
        assert recorder.data("count") == ["1", "2", "3"]


async def test_recorder_does_not_record_a_state_value_set_before_it() -> None:
    store = ChannelStore()
    await store.set("count", 1)
    with ChannelRecorder(store) as recorder:
        assert recorder.events == []
        await store.set("count", 2)
        assert recorder.data("count") == ["2"]


async def test_recorder_keeps_what_was_sent_just_before_the_store_closed() -> None:
    store = ChannelStore()
    with ChannelRecorder(store) as recorder:
        await store.send("room", "last")
        await store.aclose()
        assert recorder.data("room") == ["last"]
        assert recorder.closed


async def test_recorder_keeps_recording_after_a_channel_is_revoked() -> None:
    store = ChannelStore()
    with ChannelRecorder(store) as recorder:
        await store.send("room", "before")
        assert store.revoke(channel="room") == 1
        await store.send("room", "after")
        await store.send("new", "on a channel made after the revoke")
        assert not recorder.closed
        assert recorder.data("room") == ["before", "after"]
        assert recorder.channels == ["room", "new"]
        store.revoke(channel="room")
        await store.send("room", "again")
        assert [e.data for e in await recorder.wait_for(4, timeout=1)][-1] == "again"
        assert store.statistics().subscribers == 1
