"""Sending: input checked at the call, ids, send_sync from threads."""

from __future__ import annotations

import math
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from _store_helpers import ID, data, key_of
from sse_channels import (
    GAP_EVENT,
    ChannelStore,
    Event,
    StoreClosedError,
    format_sse,
    parse_sse,
)
from sse_channels.testing import collect, drain, gap_reason

pytestmark = pytest.mark.anyio


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
