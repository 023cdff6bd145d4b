"""State channels, listen() callbacks and receive()."""

from __future__ import annotations

import sys

import anyio
import anyio.to_thread
import pytest

from _store_helpers import data
from sse_channels import (
    ChannelStore,
    Event,
    StoreClosedError,
    SubscriptionClosed,
)
from sse_channels.testing import drain

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup


pytestmark = pytest.mark.anyio


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
