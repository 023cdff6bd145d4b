from __future__ import annotations

import gc
import json
import math
import re
import sys
import threading
import tracemalloc
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest

from sse_channels import (
    GAP_EVENT,
    ChannelStore,
    Event,
    SlowConsumerError,
    StoreClosedError,
    Subscription,
    SubscriptionClosed,
    format_sse,
    parse_sse,
)
from sse_channels.backends import Backend, MemoryBackend
from sse_channels.testing import collect, drain, gap_reason

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

if TYPE_CHECKING:
    from sse_channels.backends import Deliver

pytestmark = pytest.mark.anyio

ID = re.compile(r"[0-9a-z]{4}-[0-9]+")


def data(events: list[Event]) -> list[str]:
    return [event.data for event in events]


def key_of(event_id: str | None) -> int:
    assert event_id is not None
    assert ID.fullmatch(event_id), event_id
    return int(event_id.split("-")[1])


def gap_data(event: Event) -> dict[str, Any]:
    assert event.event == GAP_EVENT
    decoded: dict[str, Any] = json.loads(event.data)
    return decoded


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"history": 0}, "history must be an int of at least 1"),
        ({"history": 1.5}, "history must be an int"),
        ({"history_ttl": 0}, "history_ttl must be positive"),
        ({"history_ttl": -1.0}, "history_ttl must be positive"),
        ({"slow_consumer": "block"}, "slow_consumer must be"),
        ({"max_lag": 0}, "max_lag must be a positive int"),
    ],
)
def test_store_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChannelStore(**options)


# -- send -----------------------------------------------------------------------------------


async def test_store_send_returns_the_event_with_its_id_and_channel() -> None:
    store = ChannelStore()
    event = await store.send("room", {"text": "hi"}, event="chat", retry=1000)
    assert event.data == '{"text":"hi"}'
    assert event.event == "chat"
    assert event.channel == "room"
    assert event.retry == 1000
    assert event.id is not None
    assert ID.fullmatch(event.id)
    # What a browser decodes from the bytes is the event (the channel stays server-side).
    assert parse_sse(event.encoded) == [event.replace(channel=None)]


async def test_store_send_delivers_to_subscribers_of_that_channel_only() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as room, store.subscribe("other") as other:
        sent = await store.send("room", "hello")
        assert await drain(room) == [sent]
        assert await drain(other) == []


async def test_store_send_uses_the_store_serializer() -> None:
    store = ChannelStore(serializer=lambda value: f"<{value}>")
    async with store.subscribe("room") as subscription:
        await store.send("room", 42)
        await store.send("room", "text is sent as is")
        assert data(await drain(subscription)) == ["<42>", "text is sent as is"]


async def test_store_send_to_a_name_subscribe_would_reject_raises() -> None:
    # Regression: send() checked control characters in channel names only on its slow path,
    # so it stored events on a channel nobody could subscribe to.
    store = ChannelStore()
    with pytest.raises(ValueError, match="printable"):
        store.subscribe("bad\nname")
    with pytest.raises(ValueError, match="printable"):
        await store.send("bad\nname", "x")


@pytest.mark.parametrize(
    ("channel", "payload", "options", "error"),
    [
        ("", "x", {}, ValueError),
        ("user:*", "x", {}, ValueError),
        ("bad\nname", "x", {}, ValueError),
        (b"room", "x", {}, TypeError),
        (None, "x", {}, TypeError),
        ("room", object(), {}, TypeError),
        ("room", math.nan, {}, TypeError),
        ("room", "x", {"event": GAP_EVENT}, ValueError),
        ("room", "x", {"event": "error"}, ValueError),
        ("room", "x", {"event": "a\nb"}, ValueError),
        ("room", "x", {"id": "a\nb"}, ValueError),
        ("room", "x", {"id": " padded"}, ValueError),
        ("room", "x", {"id": "caf\u00e9"}, ValueError),
        ("room", "x", {"id": "nul\0"}, ValueError),
        ("room", "x", {"id": 7}, TypeError),
        ("room", "x", {"retry": -1}, ValueError),
        ("room", "x", {"retry": True}, TypeError),
        ("room", "\ud800", {}, ValueError),
    ],
)
async def test_store_send_validates_at_the_call_and_stores_nothing(
    channel: Any, payload: Any, options: dict[str, Any], error: type[Exception]
) -> None:
    store = ChannelStore()
    async with store.subscribe("room", "*") as subscription:
        with pytest.raises(error):
            await store.send(channel, payload, **options)
        if set(options) <= {"event"}:  # set() takes no id or retry
            with pytest.raises(error):
                await store.set(channel, payload, **options)
        assert await drain(subscription) == []
    stats = store.statistics()
    assert stats.events_sent == 0
    assert stats.channels == 0  # not even "room": a channel without events is not kept
    assert store.get("room") is None


async def test_store_send_never_yields_to_the_event_loop() -> None:
    store = ChannelStore()
    async with store.subscribe("room") as subscription:
        with anyio.CancelScope() as scope:
            scope.cancel()
            # A cancelled scope raises at the first checkpoint: there must be none.
            for i in range(100):
                await store.send("room", str(i))
            await store.set("state", 1)
        assert not scope.cancelled_caught
        assert len(await drain(subscription)) == 100


async def test_store_ids_are_monotonic_and_header_safe() -> None:
    store = ChannelStore()
    keys = []
    for i in range(300):
        event = await store.send(f"channel-{i % 7}", str(i))
        assert event.id is not None
        format_sse("", id=event.id)  # accepted as an id
        event.id.encode("ascii")
        assert event.id == event.id.strip()
        assert event.id.isprintable()
        assert f"id: {event.id}\n".encode() in event.encoded
        keys.append(key_of(event.id))
    assert keys == sorted(set(keys))  # increasing, no repeats


async def test_store_ids_differ_between_stores_so_an_old_id_is_unknown() -> None:
    first, second = ChannelStore(), ChannelStore()
    old = await first.send("room", "before the restart")
    assert old.id is not None
    await second.send("room", "after the restart")
    async with second.subscribe("room", last_event_id=old.id) as subscription:
        assert gap_reason((await drain(subscription))[0]) == "unknown_id"


# -- subscribe --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "options", "error"),
    [
        ((), {}, ValueError),
        (("",), {}, ValueError),
        (("a\tb",), {}, ValueError),
        ((1,), {}, TypeError),
        (("room",), {"last_event_id": 7}, TypeError),
        (("room",), {"slow_consumer": "wait"}, ValueError),
        (("room",), {"max_lag": -1}, ValueError),
    ],
)
async def test_store_subscribe_rejects_bad_arguments(
    channels: tuple[Any, ...], options: dict[str, Any], error: type[Exception]
) -> None:
    store = ChannelStore()
    with pytest.raises(error):
        store.subscribe(*channels, **options)
    assert store.statistics().subscribers == 0


async def test_store_subscribe_merges_channels_in_send_order() -> None:
    store = ChannelStore()
    async with store.subscribe("a", "b", "c") as subscription:
        sent = [await store.send(name, f"{name}{i}") for i in range(3) for name in "cab"]
        assert await drain(subscription) == sent


async def test_store_subscribe_naming_a_channel_twice_delivers_once() -> None:
    store = ChannelStore()
    async with store.subscribe("room", "room", "r*", "*m") as subscription:
        await store.send("room", "once")
        assert data(await drain(subscription)) == ["once"]


async def test_store_subscribe_to_a_new_channel_and_its_pattern_delivers_once() -> None:
    # Regression: the pattern attached the subscription to the new channel, and the name
    # attached it a second time, so every event came twice.
    store = ChannelStore()
    async with store.subscribe("user:1", "user:*") as subscription:
        await store.send("user:1", "once")
        assert data(await drain(subscription)) == ["once"]
        assert subscription.channels == ["user:1"]


async def test_store_pattern_picks_up_channels_created_later() -> None:
    store = ChannelStore()
    async with store.subscribe("user:*") as subscription:
        first = await store.send("user:1", "a")
        await store.send("room", "not mine")
        second = await store.send("user:2", "b")
        assert await drain(subscription) == [first, second]
        async with store.subscribe("user:3"):  # a channel made by subscribing to it
            third = await store.send("user:3", "c")
        assert await drain(subscription) == [third]


async def test_store_patterns_of_different_subscriptions_each_get_the_event() -> None:
    store = ChannelStore()
    async with store.subscribe("user:*") as users, store.subscribe("*:7") as sevens:
        event = await store.send("user:7", "x")
        assert await drain(users) == [event]
        assert await drain(sevens) == [event]


async def test_store_subscribing_to_unused_channels_keeps_no_channel_behind() -> None:
    # Regression: every name ever subscribed to stayed in the store (names from URLs grew
    # memory without bound).
    store = ChannelStore()
    for i in range(100):
        async with store.subscribe(f"room:{i}", "user:*"):
            pass
    assert store.statistics().channels == 0


async def test_store_keeps_channels_that_have_history() -> None:
    store = ChannelStore()
    await store.send("room", "x")
    async with store.subscribe("room"):
        pass
    assert store.statistics().channels == 1


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


# -- state channels ---------------------------------------------------------------------------


async def test_store_state_channel_gives_new_subscribers_the_current_value_first() -> None:
    store = ChannelStore()
    await store.set("count", 1)
    current = await store.set("count", 2)
    async with store.subscribe("count") as subscription:
        assert await drain(subscription) == [current]
        following = await store.set("count", 3)
        assert await drain(subscription) == [following]


async def test_store_state_channel_coalesces_to_the_latest_value_under_lag() -> None:
    store = ChannelStore(history=5)
    async with store.subscribe("count") as subscription:
        await store.set("count", 0)
        for value in range(1, 101):
            await store.set("count", value)
        assert data(await drain(subscription)) == ["100"]
        assert subscription.close_reason is None  # lag on a state channel never disconnects
    stats = store.statistics()
    assert stats.coalesced == 100
    assert stats.slow_consumer_disconnects == 0


async def test_store_state_channel_coalesces_within_a_multi_channel_batch() -> None:
    store = ChannelStore()
    async with store.subscribe("count", "log") as subscription:
        await store.set("count", 1)
        await store.send("log", "a")
        await store.set("count", 2)
        await store.send("log", "b")
        assert data(await drain(subscription)) == ["a", "2", "b"]


async def test_store_state_update_and_get() -> None:
    store = ChannelStore()
    assert store.get("count") is None
    assert store.get("count", 0) == 0
    await store.update("count", lambda value: (value or 0) + 1)
    event = await store.update("count", lambda value: value + 1)
    assert store.get("count") == 2
    assert event.data == "2"
    await store.set("doc", {"title": "x"})
    assert store.get("doc") == {"title": "x"}


async def test_store_send_to_a_state_channel_is_refused_so_get_and_subscribers_agree() -> None:
    store = ChannelStore()
    await store.set("count", 1)
    async with store.subscribe("count") as subscription:
        with pytest.raises(ValueError, match="state channel"):
            await store.send("count", 2)
        with pytest.raises(ValueError, match="state channel"):
            await anyio.to_thread.run_sync(lambda: store.send_sync("count", 2))
        assert store.get("count") == 1
        assert [e.data for e in await drain(subscription)] == ["1"]
    async with store.subscribe("count") as late:
        assert [e.data for e in await drain(late)] == ["1"]


async def test_store_state_resume_from_the_current_value_does_not_repeat_it() -> None:
    store = ChannelStore()
    await store.set("count", 1)
    latest = await store.set("count", 2)
    async with store.subscribe("count", last_event_id=latest.id) as subscription:
        assert await drain(subscription) == []
    async with store.subscribe("count", last_event_id="unknown") as subscription:
        assert await drain(subscription) == [latest]


async def test_store_state_channel_keeps_its_value_beyond_its_ttl() -> None:
    store = ChannelStore(history_ttl=0.05)
    current = await store.set("count", 7)
    await anyio.sleep(0.1)
    async with store.subscribe("count") as subscription:
        assert await drain(subscription) == [current]


async def test_store_receive_returns_the_current_state_at_once() -> None:
    store = ChannelStore()
    current = await store.set("count", 5)
    assert await store.receive("count", timeout=1) == current


# -- listen (Svelte callbacks) ----------------------------------------------------------------


async def test_store_listen_calls_back_for_each_event_until_unsubscribed() -> None:
    store = ChannelStore()
    seen: list[str] = []
    unsubscribe = store.listen("room", lambda event: seen.append(event.data))
    await store.send("room", "1")
    await store.send("other", "x")
    await store.send("room", "2")
    unsubscribe()
    unsubscribe()  # idempotent
    await store.send("room", "3")
    assert seen == ["1", "2"]


async def test_store_listen_on_a_state_channel_calls_back_with_the_current_value_first() -> None:
    store = ChannelStore()
    await store.set("count", 1)
    seen: list[str] = []
    unsubscribe = store.listen("count", lambda event: seen.append(event.data))
    assert seen == ["1"]  # synchronously, inside listen(), as Svelte's subscribe does
    await store.set("count", 2)
    unsubscribe()
    assert seen == ["1", "2"]


async def test_store_listen_same_callback_twice_unsubscribes_separately() -> None:
    store = ChannelStore()
    seen: list[str] = []
    first = store.listen("room", lambda event: seen.append(event.data))
    callback = seen.append

    def record(event: Event) -> None:
        callback(event.data)

    second = store.listen("room", record)
    third = store.listen("room", record)
    await store.send("room", "a")
    second()
    await store.send("room", "b")
    first()
    third()
    assert seen == ["a", "a", "a", "b", "b"]


async def test_store_listen_callback_error_propagates_after_the_event_is_stored() -> None:
    store = ChannelStore()
    seen: list[str] = []

    def fail(event: Event) -> None:
        raise RuntimeError(f"callback failed on {event.data}")

    unsubscribe_fail = store.listen("room", fail)
    unsubscribe_seen = store.listen("room", lambda event: seen.append(event.data))
    async with store.subscribe("room") as subscription:
        with pytest.raises(RuntimeError, match="callback failed on x"):
            await store.send("room", "x")
        assert data(await drain(subscription)) == ["x"]
    assert seen == ["x"]  # the other callbacks still ran
    assert store.statistics().events_sent == 1
    unsubscribe_fail()
    unsubscribe_seen()


async def test_store_listen_several_callback_errors_propagate_as_a_group() -> None:
    store = ChannelStore()

    def fail(event: Event) -> None:
        raise ValueError(event.data)

    unsubscribers = [store.listen("room", fail), store.listen("room", fail)]
    with pytest.raises(ExceptionGroup) as caught:
        await store.send("room", "x")
    assert [str(e) for e in caught.value.exceptions] == ["x", "x"]
    for unsubscribe in unsubscribers:
        unsubscribe()


async def test_store_listen_whose_first_call_fails_stays_unregistered() -> None:
    # Regression: the callback stayed registered although listen() raised, and the caller
    # had no unsubscriber to remove it with.
    store = ChannelStore()
    await store.set("count", 1)
    calls: list[str] = []

    def fail(event: Event) -> None:
        calls.append(event.data)
        raise RuntimeError("bad callback")

    with pytest.raises(RuntimeError):
        store.listen("count", fail)
    await store.set("count", 2)
    assert calls == ["1"]
    assert store.statistics().watched_channels == 0


async def test_store_listen_rejects_patterns_and_non_callables() -> None:
    store = ChannelStore()
    with pytest.raises(ValueError):
        store.listen("user:*", print)
    with pytest.raises(TypeError):
        store.listen("room", "not callable")  # type: ignore[arg-type]


# -- receive ----------------------------------------------------------------------------------


async def test_store_receive_times_out_with_timeout_error() -> None:
    store = ChannelStore()
    with pytest.raises(TimeoutError):
        await store.receive("room", timeout=0.01)
    assert store.statistics().subscribers == 0


async def test_store_receive_returns_the_next_event_sent() -> None:
    store = ChannelStore()
    await store.send("room", "before")
    result: list[Event] = []
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            result.append(await store.receive("room", timeout=5))

        tg.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        sent = await store.send("room", "next")
    assert result == [sent]


async def test_store_receive_ends_with_store_closed_error_when_the_store_closes() -> None:
    store = ChannelStore()
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            with pytest.raises(StoreClosedError):
                await store.receive("room", timeout=5)

        tg.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        await store.aclose()
    with pytest.raises(StoreClosedError):
        await store.receive("room")


async def test_store_receive_revoked_raises_subscription_closed() -> None:
    store = ChannelStore()
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            with pytest.raises(SubscriptionClosed) as caught:
                await store.receive("room", timeout=5)
            assert caught.value.reason == "revoked"

        tg.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        assert store.revoke(channel="room") == 1


# -- send_sync --------------------------------------------------------------------------------


async def test_store_send_sync_from_a_worker_thread() -> None:
    store = ChannelStore()
    async with store.subscribe("jobs") as subscription:
        threads: list[int] = []

        def work() -> Event:
            threads.append(threading.get_ident())
            return store.send_sync("jobs", {"done": 1}, event="job")

        event = await anyio.to_thread.run_sync(work)
        assert threads[0] != threading.get_ident()
        assert await collect(subscription, 1, timeout=5) == [event]
        assert (event.event, event.data) == ("job", '{"done":1}')


async def test_store_send_sync_validates_in_the_calling_thread() -> None:
    store = ChannelStore()
    await store.send("jobs", "first use in the loop")

    def work() -> None:
        with pytest.raises(ValueError):
            store.send_sync("jobs", "x", id="bad\nid")

    await anyio.to_thread.run_sync(work)
    assert store.statistics().events_sent == 1


async def test_store_send_sync_from_the_loop_thread_raises_runtime_error() -> None:
    store = ChannelStore()
    await store.send("jobs", "x")
    with pytest.raises(RuntimeError, match="use await send"):
        store.send_sync("jobs", "y")


def test_store_send_sync_before_any_event_loop_raises_runtime_error() -> None:
    store = ChannelStore()
    with pytest.raises(RuntimeError, match="has not been used in an event loop"):
        store.send_sync("jobs", "x")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_store_used_again_in_a_later_event_loop_sends_from_threads_into_that_loop(
    backend: str,
) -> None:
    # A module-level store across tests, each test in its own event loop.
    store = ChannelStore()

    async def first_loop() -> None:
        await store.send("jobs", "in the first loop")

    async def later_loop() -> list[str]:
        async with store.subscribe("jobs") as subscription:
            await anyio.to_thread.run_sync(lambda: store.send_sync("jobs", "from a thread"))
            return [event.data for event in await collect(subscription, 1, timeout=5)]

    async def send_only_loop() -> None:
        with pytest.raises(RuntimeError, match="last ran in has finished"):
            await anyio.to_thread.run_sync(lambda: store.send_sync("jobs", "lost loop"))
        await store.send("jobs", "noted again")  # this loop is the store's loop from now on
        sent = await anyio.to_thread.run_sync(lambda: store.send_sync("jobs", "works"))
        assert sent.data == "works"

    anyio.run(first_loop, backend=backend)
    assert anyio.run(later_loop, backend=backend) == ["from a thread"]
    anyio.run(send_only_loop, backend=backend)
    # From the thread that ran the finished loop (the main thread here), not "use await".
    with pytest.raises(RuntimeError, match="last ran in has finished"):
        store.send_sync("jobs", "after every loop")


async def test_store_send_sync_to_a_closed_store_raises() -> None:
    store = ChannelStore()
    await store.send("jobs", "x")
    await store.aclose()

    def work() -> None:
        with pytest.raises(StoreClosedError):
            store.send_sync("jobs", "y")

    await anyio.to_thread.run_sync(work)


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


class SpyBackend:
    """A MemoryBackend that records watch and unwatch calls."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.calls: list[tuple[str, str]] = []

    def attach(self, deliver: Deliver) -> None:
        self.inner.attach(deliver)

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
