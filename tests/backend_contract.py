"""The contract every backend must pass, as a reusable test class.

A backend's test module subclasses ``BackendContract`` and provides a ``store_factory``
fixture: a callable that takes ``ChannelStore`` options (``history=``, ``slow_consumer=``,
...) and returns a new, not yet started store on that backend, e.g.::

    class TestMemoryBackendContract(BackendContract):
        @pytest.fixture
        def store_factory(self) -> StoreFactory:
            return lambda **options: ChannelStore(MemoryBackend(), **options)

The tests use only the public store API and start each store with ``async with``. They
never assume that an event is readable the moment ``send()`` returns (a networked backend
delivers it from its reader task): they wait with a deadline, and prove that nothing else
arrived by sending a sentinel event last and reading up to it. The factory must make
``history=`` bound what the whole system retains (for Redis: the stream length too), so
that a resume from before it gets a gap signal. A backend limited to one event loop
library overrides the ``anyio_backend`` fixture in its subclass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, ClassVar

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
    format_sse,
)
from sse_channels.testing import collect

__all__ = ["BackendContract", "StoreFactory"]

#: Makes a new store on the backend under test from ``ChannelStore`` keyword options.
StoreFactory = Callable[..., ChannelStore]

TIMEOUT = 5.0
END = "--end--"


async def until_end(subscription: Subscription) -> list[Event]:
    """Read up to the sentinel event (excluded): everything that arrived before it."""
    events: list[Event] = []
    with anyio.fail_after(TIMEOUT):
        while True:
            (event,) = await collect(subscription, 1, timeout=None)
            if event.data == END:
                return events
            events.append(event)


def fields(events: list[Event]) -> list[tuple[str, str | None, str | None, str | None]]:
    return [(e.data, e.event, e.id, e.channel) for e in events]


def gap(event: Event) -> tuple[str, str]:
    assert event.event == GAP_EVENT, event
    decoded = json.loads(event.data)
    return decoded["reason"], decoded["channel"]


class BackendContract:
    """Behaviour a ``ChannelStore`` must show whatever backend carries its events."""

    pytestmark: ClassVar = [pytest.mark.anyio]

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        raise NotImplementedError("a backend's test class provides store_factory")

    # -- delivery -------------------------------------------------------------------------

    async def test_contract_event_reaches_every_subscriber_of_its_channel_in_order(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            subscriptions = [store.subscribe("room") for _ in range(3)]
            sent = [await store.send("room", {"n": i}, event="tick") for i in range(20)]
            await store.send("room", END)
            for subscription in subscriptions:
                assert fields(await until_end(subscription)) == fields(sent)
                subscription.close()

    async def test_contract_channels_are_isolated(self, store_factory: StoreFactory) -> None:
        async with store_factory() as store:
            room, other = store.subscribe("room"), store.subscribe("Room")
            sent = await store.send("room", "mine")
            await store.send("Room", "not mine")
            await store.send("room", END)
            await store.send("Room", END)
            assert fields(await until_end(room)) == fields([sent])
            assert [e.data for e in await until_end(other)] == ["not mine"]
            room.close()
            other.close()

    async def test_contract_several_channels_arrive_merged_in_send_order(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            subscription = store.subscribe("a", "b", "c")
            sent = [await store.send("abc"[i % 3], str(i)) for i in range(30)]
            await store.send("a", END)
            assert fields(await until_end(subscription)) == fields(sent)
            subscription.close()

    async def test_contract_pattern_covers_channels_that_appear_later(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            subscription = store.subscribe("user:*")
            first = await store.send("user:1", "one")
            await store.send("room", "not a user")
            second = await store.send("user:2", "two")
            await store.send("user:3", END)
            assert fields(await until_end(subscription)) == fields([first, second])
            subscription.close()

    async def test_contract_ids_are_unique_and_header_safe(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            ids = [(await store.send(f"c{i % 4}", str(i))).id for i in range(50)]
        assert len(set(ids)) == len(ids)
        for event_id in ids:
            assert event_id is not None
            format_sse("", id=event_id)  # a valid id: no CR, LF or NUL
            assert re.fullmatch(r"[!-~]+", event_id), event_id  # printable ASCII, no spaces

    async def test_contract_custom_id_and_retry_arrive_unchanged(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            subscription = store.subscribe("orders")
            sent = await store.send("orders", "o", id="order-7", retry=2500, event="order")
            assert sent.id == "order-7"
            (got,) = await collect(subscription, 1, timeout=TIMEOUT)
            assert (got.data, got.id, got.retry, got.event) == ("o", "order-7", 2500, "order")
            assert b"retry: 2500\n" in got.encoded
            subscription.close()

    # -- resume ---------------------------------------------------------------------------

    async def test_contract_resume_from_any_id_yields_exactly_the_rest(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            live = store.subscribe("a", "b")
            for i in range(10):
                await store.send("ab"[i % 3 == 0], str(i))
            await store.send("a", END)
            delivered = await until_end(live)
            live.close()
            assert [e.data for e in delivered] == [str(i) for i in range(10)]
            for index, event in enumerate(delivered):
                resumed = store.subscribe("a", "b", last_event_id=event.id)
                await store.send("b", END)
                assert fields(await until_end(resumed)) == fields(delivered[index + 1 :])
                resumed.close()

    async def test_contract_resume_from_an_unknown_id_signals_a_gap_then_goes_live(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            await store.send("room", "before")
            subscription = store.subscribe("room", last_event_id="not-an-id-of-ours")
            (signal,) = await collect(subscription, 1, timeout=TIMEOUT)
            assert gap(signal) == ("unknown_id", "room")
            live = await store.send("room", "live")
            await store.send("room", END)
            assert fields(await until_end(subscription)) == fields([live])
            subscription.close()

    async def test_contract_resume_from_before_the_history_signals_a_gap_then_the_rest(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory(history=3) as store:
            sent = [await store.send("room", str(i)) for i in range(10)]
            subscription = store.subscribe("room", last_event_id=sent[0].id)
            (signal,) = await collect(subscription, 1, timeout=TIMEOUT)
            assert gap(signal) == ("expired", "room")
            rest: list[Event] = []
            with anyio.fail_after(TIMEOUT):
                while not rest or rest[-1].data != "9":
                    rest += await collect(subscription, 1, timeout=None)
            subscription.close()
        # No silent hole: what follows the gap is an unbroken run up to the newest event.
        assert [e.data for e in rest] == [str(i) for i in range(10 - len(rest), 10)]
        assert len(rest) >= 3

    # -- state channels and callbacks -------------------------------------------------------

    async def test_contract_state_channel_gives_the_current_value_first(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            await store.set("count", 1)
            current = await store.set("count", 2)
            assert store.get("count") == 2
            subscription = store.subscribe("count")
            (first,) = await collect(subscription, 1, timeout=TIMEOUT)
            assert fields([first]) == fields([current])
            following = await store.set("count", 3)
            (second,) = await collect(subscription, 1, timeout=TIMEOUT)
            assert fields([second]) == fields([following])
            subscription.close()

    async def test_contract_listen_calls_back_until_unsubscribed(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            seen: list[str] = []
            unsubscribe = store.listen("room", lambda event: seen.append(event.data))
            probe = store.subscribe("room")
            await store.send("room", "1")
            await store.send("room", "2")
            await collect(probe, 2, timeout=TIMEOUT)  # both have reached this process
            unsubscribe()
            await store.send("room", "3")
            await collect(probe, 1, timeout=TIMEOUT)
            probe.close()
        assert seen == ["1", "2"]

    # -- slow consumers and lifecycle --------------------------------------------------------

    async def test_contract_slow_consumer_is_disconnected_and_resumes_without_loss(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory(history=5) as store:
            slow = store.subscribe("room")
            probe = store.subscribe("room", slow_consumer="drop_oldest")
            await store.send("room", "0")
            (first,) = await collect(slow, 1, timeout=TIMEOUT)
            sent = [await store.send("room", str(i)) for i in range(1, 5)]
            await store.send("room", END)
            await until_end(probe)  # all of it reached this process
            assert fields(await until_end(slow)) == fields(sent)  # within history: no loss
            for i in range(5, 20):
                await store.send("room", str(i))
            await store.send("room", END)
            assert await until_end(probe)
            with pytest.raises(SlowConsumerError), anyio.fail_after(TIMEOUT):
                await collect(slow, 1)
            assert slow.close_reason == "slow_consumer"
            # It resumes from the last event it had; what is gone is announced by a gap.
            resumed = store.subscribe("room", last_event_id=slow.last_event_id)
            await store.send("room", "last")
            events = await collect(resumed, 1, timeout=TIMEOUT)
            assert gap(events[0]) == ("expired", "room")
            resumed.close()
            probe.close()
        assert first.data == "0"

    async def test_contract_aclose_ends_every_subscription_and_refuses_more(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory()
        async with store:
            subscriptions = [store.subscribe("room"), store.subscribe("user:*")]
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tg:
                    for subscription in subscriptions:
                        tg.start_soon(collect, subscription)
                    await anyio.wait_all_tasks_blocked()
                    await store.aclose()
        assert [s.close_reason for s in subscriptions] == ["store_closed", "store_closed"]
        with pytest.raises(StoreClosedError):
            await store.send("room", "x")
        with pytest.raises(StoreClosedError):
            store.subscribe("room")

    async def test_contract_channel_is_watched_from_first_subscriber_to_last(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            assert store.statistics().watched_channels == 0
            first, second = store.subscribe("room"), store.subscribe("room")
            assert store.statistics().watched_channels == 1
            first.close()
            assert store.statistics().watched_channels == 1
            second.close()
            stats = store.statistics()
            assert (stats.watched_channels, stats.subscribers) == (0, 0)
            assert isinstance(stats.backend, dict)

    async def test_contract_send_sync_from_a_worker_thread(
        self, store_factory: StoreFactory
    ) -> None:
        async with store_factory() as store:
            subscription = store.subscribe("jobs")
            sent: Any = await anyio.to_thread.run_sync(store.send_sync, "jobs", {"done": True})
            (got,) = await collect(subscription, 1, timeout=TIMEOUT)
            assert fields([got]) == fields([sent])
            subscription.close()
