"""Resume: replay after an id, gap signals, history limits by count and age."""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest

from _store_helpers import data, gap_data
from sse_channels import (
    ChannelStore,
    SlowConsumerError,
)
from sse_channels.testing import collect, drain, gap_reason

pytestmark = pytest.mark.anyio


# -- resume -----------------------------------------------------------------------------------


async def test_store_resume_replays_what_came_after_the_id_then_goes_live() -> None:
    store = ChannelStore()
    sent = [await store.send("room", str(i)) for i in range(5)]
    async with store.subscribe("room", last_event_id=sent[1].id) as subscription:
        assert await drain(subscription) == sent[2:]
        live = await store.send("room", "live")
        assert await drain(subscription) == [live]
    assert store.statistics().replayed == 3


async def test_store_resume_of_several_channels_from_one_id() -> None:
    store = ChannelStore()
    async with store.subscribe("a", "b") as first:
        for i in range(3):
            await store.send("a", f"a{i}")
            await store.send("b", f"b{i}")
        seen = await collect(first, 3)
        assert data(seen) == ["a0", "b0", "a1"]
        resume_from = first.last_event_id
    later = [await store.send("b", "b3"), await store.send("a", "a3")]
    async with store.subscribe("a", "b", last_event_id=resume_from) as second:
        assert data(await drain(second)) == ["b1", "a2", "b2", "b3", "a3"]
        assert (await drain(second)) == []
    assert later[0].id is not None


async def test_store_resume_from_the_latest_id_replays_nothing() -> None:
    store = ChannelStore()
    last = await store.send("room", "x")
    async with store.subscribe("room", last_event_id=last.id) as subscription:
        assert await drain(subscription) == []


async def test_store_resume_from_a_custom_id() -> None:
    store = ChannelStore()
    await store.send("orders", "1", id="order-1")
    await store.send("orders", "2", id="order-2")
    third = await store.send("orders", "3")
    async with store.subscribe("orders", last_event_id="order-1") as subscription:
        events = await drain(subscription)
    assert [(e.data, e.id) for e in events] == [("2", "order-2"), ("3", third.id)]


async def test_store_resume_from_a_custom_id_across_channels() -> None:
    store = ChannelStore()
    await store.send("a", "a0")
    await store.send("b", "b0", id="mark")
    await store.send("a", "a1")
    async with store.subscribe("a", "b", last_event_id="mark") as subscription:
        assert data(await drain(subscription)) == ["a1"]


async def test_store_resume_from_an_unknown_id_signals_a_gap_then_goes_live() -> None:
    store = ChannelStore()
    await store.send("room", "before")
    for unknown in ("garbage", "zzzz-1", "order-9"):
        async with store.subscribe("room", last_event_id=unknown) as subscription:
            gap, *rest = await drain(subscription)
            assert rest == []
            assert gap_data(gap) == {"reason": "unknown_id", "channel": "room"}
            assert gap.channel == "room"
            live = await store.send("room", "live")
            assert await drain(subscription) == [live]
        # Resuming from the gap's id continues exactly after what the gap covered.
        async with store.subscribe("room", last_event_id=gap.id) as resumed:
            assert await drain(resumed) == [live]
    assert store.statistics().gaps == 3


async def test_store_resume_from_an_id_ahead_of_the_store_is_unknown() -> None:
    store = ChannelStore()
    event = await store.send("room", "x")
    assert event.id is not None
    ahead = f"{event.id.split('-')[0]}-999"
    async with store.subscribe("room", last_event_id=ahead) as subscription:
        assert gap_reason((await drain(subscription))[0]) == "unknown_id"


async def test_store_resume_from_before_the_history_signals_expired_then_the_rest() -> None:
    store = ChannelStore(history=3)
    sent = [await store.send("room", str(i)) for i in range(10)]
    async with store.subscribe("room", last_event_id=sent[1].id) as subscription:
        gap, *rest = await drain(subscription)
    assert gap_data(gap) == {"reason": "expired", "channel": "room"}
    assert rest == sent[-3:]
    assert gap.id == sent[-4].id  # the last event lost: resuming from it is complete
    async with store.subscribe("room", last_event_id=gap.id) as subscription:
        assert await drain(subscription) == sent[-3:]
    stats = store.statistics()
    assert (stats.gaps, stats.replayed) == (1, 6)


async def test_store_resume_right_at_the_history_edge_has_no_gap() -> None:
    store = ChannelStore(history=3)
    sent = [await store.send("room", str(i)) for i in range(10)]
    async with store.subscribe("room", last_event_id=sent[-4].id) as subscription:
        assert await drain(subscription) == sent[-3:]


async def test_store_resume_of_several_channels_gaps_only_those_that_lost_events() -> None:
    store = ChannelStore(history=2)
    mark = await store.send("quiet", "q0")
    busy = [await store.send("busy", str(i)) for i in range(5)]
    quiet = await store.send("quiet", "q1")
    async with store.subscribe("busy", "quiet", last_event_id=mark.id) as subscription:
        events = await drain(subscription)
    assert gap_data(events[0]) == {"reason": "expired", "channel": "busy"}
    assert events[1:] == [*busy[-2:], quiet]


async def test_store_resume_gap_comes_in_send_order_so_resuming_from_any_id_loses_nothing() -> None:
    # Regression: an "expired" gap was handed out before older events of the other
    # channels, so a client that reconnected right after the gap skipped them silently.
    store = ChannelStore()
    store.configure_channel("busy", history=2)
    mark = await store.send("quiet", "q0")
    quiet = await store.send("quiet", "q1")
    busy = [await store.send("busy", str(i)) for i in range(4)]
    async with store.subscribe("busy", "quiet", last_event_id=mark.id) as subscription:
        events = await drain(subscription)
    assert events[0] == quiet
    assert gap_data(events[1]) == {"reason": "expired", "channel": "busy"}
    assert events[2:] == busy[-2:]
    for index, event in enumerate(events):
        async with store.subscribe("busy", "quiet", last_event_id=event.id) as resumed:
            assert await drain(resumed) == events[index + 1 :]


async def test_store_resume_further_back_than_max_lag_replays_what_is_retained() -> None:
    # Regression: the replay counted as lag, so with the "disconnect" policy every resume
    # from further back than max_lag ended at once, and the client reconnected forever.
    store = ChannelStore(max_lag=3)
    sent = [await store.send("room", str(i)) for i in range(6)]
    async with store.subscribe("room", last_event_id=sent[0].id) as subscription:
        assert await drain(subscription) == sent[1:]
        for i in range(4):  # live lag still counts
            await store.send("room", str(i))
        with pytest.raises(SlowConsumerError):
            await drain(subscription)


async def test_store_history_per_channel_with_configure_channel() -> None:
    store = ChannelStore(history=100)
    store.configure_channel("small", history=2)
    sent = [await store.send("small", str(i)) for i in range(5)]
    async with store.subscribe("small", last_event_id=sent[0].id) as subscription:
        events = await drain(subscription)
    assert gap_reason(events[0]) == "expired"
    assert events[1:] == sent[-2:]


async def test_store_configure_channel_rejects_zero_history_and_ttl() -> None:
    # Regression: 0 fell back to the store's default instead of raising like ChannelStore().
    store = ChannelStore()
    with pytest.raises(ValueError, match="history"):
        store.configure_channel("room", history=0)
    with pytest.raises(ValueError, match="history_ttl"):
        store.configure_channel("room", history_ttl=0)


async def test_store_history_ttl_forgets_old_events() -> None:
    store = ChannelStore(history_ttl=0.05)
    old = await store.send("room", "old")
    await anyio.sleep(0.1)
    new = await store.send("room", "new")
    async with store.subscribe("room", last_event_id=old.id) as subscription:
        assert await drain(subscription) == [new]
    async with store.subscribe("room", last_event_id=f"{old.id}"[:-1] + "0") as subscription:
        gap, *rest = await drain(subscription)
    assert gap_reason(gap) == "expired"
    assert rest == [new]


async def test_store_configure_channel_ttl_counts_existing_events_from_now() -> None:
    # Regression: giving an existing channel an age limit expired its whole history at once.
    store = ChannelStore()
    sent = [await store.send("room", str(i)) for i in range(3)]
    store.configure_channel("room", history_ttl=60)
    async with store.subscribe("room", last_event_id=sent[0].id) as subscription:
        assert await drain(subscription) == sent[1:]


async def test_store_history_ttl_applies_to_live_readers_with_drop_oldest() -> None:
    store = ChannelStore(history_ttl=0.05, slow_consumer="drop_oldest")
    async with store.subscribe("a", "b") as subscription:
        await store.send("a", "stale")
        await anyio.sleep(0.1)
        fresh = await store.send("b", "fresh")
        events = await drain(subscription)
    assert gap_data(events[0]) == {"reason": "slow_consumer", "channel": "a"}
    assert events[1:] == [fresh]


async def test_store_history_ttl_gap_reaches_a_multi_channel_reader_with_nothing_else() -> None:
    # Regression: when every unread event had expired, the gap was dropped from a
    # multi-channel batch: a silent hole.
    store = ChannelStore(history_ttl=0.05, slow_consumer="drop_oldest")
    async with store.subscribe("a", "b") as subscription:
        await store.send("a", "stale")
        await anyio.sleep(0.1)
        events = await drain(subscription)
    assert [gap_reason(event) for event in events] == ["slow_consumer"]
