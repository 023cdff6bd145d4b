"""Subscribing: channels merged in send order, patterns, channels kept or dropped."""

from __future__ import annotations

from typing import Any

import pytest

from _store_helpers import data
from sse_channels import (
    ChannelStore,
)
from sse_channels.testing import drain

pytestmark = pytest.mark.anyio


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
