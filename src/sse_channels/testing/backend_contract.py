"""The contract every [Backend][sse_channels.backends.Backend] must meet, as a pytest suite.

A backend's test module subclasses ``BackendContract`` and provides one fixture,
``make_backend``: a callable that returns a new, not yet attached backend::

    import pytest
    from sse_channels.testing.backend_contract import BackendContract, BackendFactory

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def make_backend(self) -> BackendFactory:
            return lambda history: MyBackend(maxlen=history)

``history`` is the number of events per channel the store under test keeps; a backend
that retains events itself may use it as its own limit, or ignore it. Backends made by one
test stand for processes of one deployment: a networked backend lets them share their
storage (one key prefix per test, say) and subclasses ``NetworkedBackendContract``
instead, which adds the tests of delivery and resume across processes. A backend limited to one
event loop library overrides the ``anyio_backend`` fixture (``return "asyncio"``).

The suite needs pytest and anyio's pytest plugin (installed with anyio). Half of it
calls the backend directly, as a store would (``attach``, ``start``, ``watch``,
``publish``, ``history``), and checks each rule of the Protocol's docstring; the other
half runs ``ChannelStore`` on the backend through its public API. It never assumes that
an event is delivered the moment ``publish`` returns: it waits with a deadline, and proves
that nothing else arrived by sending a sentinel event last and reading up to it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import anyio
import anyio.to_thread
import pytest

from .. import (
    GAP_EVENT,
    ChannelStore,
    Event,
    SlowConsumerError,
    StoreClosedError,
    Subscription,
    format_sse,
    parse_sse,
)
from ..backends import Backend
from . import collect

__all__ = ["BackendContract", "BackendFactory", "Deliveries", "NetworkedBackendContract"]

#: Makes a new backend; called with the ``history`` of the store it will serve.
BackendFactory = Callable[[int], Backend]

TIMEOUT = 5.0
END = "--end--"


class Deliveries:
    """What a backend handed to ``deliver``, recorded as a store would receive it."""

    def __init__(self) -> None:
        #: ``(channel, key, event)`` in call order (``event`` is ``None`` for a loss).
        self.calls: list[tuple[str, int, Event | None]] = []
        #: Whether every call came in the thread that attached the recorder.
        self.threads: set[int] = set()
        self._changed = anyio.Event()

    def __call__(self, channel: str, key: int, event: Event | None) -> None:
        self.calls.append((channel, key, event))
        self.threads.add(threading.get_ident())
        self._changed.set()

    def events(self, channel: str | None = None) -> list[tuple[int, Event]]:
        """The delivered ``(key, event)`` pairs, optionally of one channel only."""
        return [
            (key, event)
            for name, key, event in self.calls
            if event is not None and (channel is None or name == channel)
        ]

    async def until(self, channel: str, data: str) -> list[tuple[int, Event]]:
        """Wait until an event with ``data`` reaches ``channel``; every pair before it."""
        with anyio.fail_after(TIMEOUT):
            while True:
                pairs = self.events()
                for index, (_, event) in enumerate(pairs):
                    if event.channel == channel and event.data == data:
                        return pairs[:index]
                self._changed = anyio.Event()
                await self._changed.wait()


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


def wire(event: Event) -> tuple[str, str | None, str | None, int | None]:
    """What a browser reads from ``event.encoded`` (the bytes may order lines either way)."""
    (decoded,) = parse_sse(event.encoded)
    return decoded.data, decoded.event, decoded.id, decoded.retry


def gap(event: Event) -> tuple[str, str]:
    assert event.event == GAP_EVENT, event
    decoded = json.loads(event.data)
    return decoded["reason"], decoded["channel"]


class BackendContract:
    """The rules of the Backend Protocol, checked directly and through a ``ChannelStore``."""

    pytestmark: ClassVar = [pytest.mark.anyio]

    @pytest.fixture
    def make_backend(self) -> BackendFactory:
        raise NotImplementedError("a backend's test class provides make_backend")

    @pytest.fixture
    def store_factory(self, make_backend: BackendFactory) -> Callable[..., ChannelStore]:
        """A new, not yet started store on a new backend, from ``ChannelStore`` options."""

        def make(**options: Any) -> ChannelStore:
            return ChannelStore(make_backend(options.get("history", 1000)), **options)

        return make

    @asynccontextmanager
    async def running(self, backend: Backend) -> AsyncIterator[Deliveries]:
        """Attach a recorder to ``backend`` and start it in a task group, as a store does."""
        deliveries = Deliveries()
        backend.attach(deliveries)
        async with anyio.create_task_group() as task_group:
            await backend.start(task_group)
            try:
                yield deliveries
            finally:
                await backend.aclose()
                task_group.cancel_scope.cancel()

    # -- the backend, called directly --------------------------------------------------------

    async def test_contract_backend_publish_gives_the_draft_an_id_that_parses_to_its_key(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend) as deliveries:
            backend.watch("room")
            draft = Event({"n": 1}, event="tick", retry=1500, channel="room")
            published = await backend.publish("room", draft)
            await backend.publish("room", Event(END, channel="room"))
            await deliveries.until("room", END)
            ((key, delivered),) = deliveries.events("room")[:1]
            assert published.id is not None
            assert published.id == backend.format_id(key)
            assert backend.parse_id(published.id) == key
            assert backend.latest_key() >= key
            # The draft's fields arrive unchanged, on the wire too.
            expected = draft.with_id(published.id)
            for event in (published, delivered):
                assert fields([event]) == fields([expected])
                assert event.retry == 1500
                assert wire(event) == wire(expected)

    async def test_contract_backend_keeps_a_caller_chosen_id(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend) as deliveries:
            backend.watch("orders")
            draft = Event("o", id="order-7", channel="orders")
            published = await backend.publish("orders", draft)
            await backend.publish("orders", Event(END, channel="orders"))
            ((_, delivered),) = await deliveries.until("orders", END)
            for event in (published, delivered):
                assert fields([event]) == fields([draft])
                assert wire(event) == wire(draft)
            assert backend.parse_id("order-7") is None

    async def test_contract_backend_keys_grow_across_channels_and_arrive_in_order_once(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend) as deliveries:
            for name in "abc":
                backend.watch(name)
            sent = []
            for i in range(30):
                name = "abc"[i % 3]
                sent.append(await backend.publish(name, Event(str(i), channel=name)))
            for name in "abc":
                await backend.publish(name, Event(END, channel=name))
                await deliveries.until(name, END)
            pairs = [(key, e) for key, e in deliveries.events() if e.data != END]
            assert deliveries.threads == {threading.get_ident()}  # the event loop's thread
            for name in "abc":
                keys = [key for key, _ in deliveries.events(name)]
                assert keys == sorted(set(keys)), f"{name}: not in key order, or repeated"
            # Sorted by key, the deliveries are the sends, in send order.
            by_key = sorted(pairs, key=lambda pair: pair[0])
            assert fields([event for _, event in by_key]) == fields(sent)
            assert backend.latest_key() >= max(key for key, _ in pairs)

    async def test_contract_backend_pattern_delivers_every_matching_channel(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend) as deliveries:
            backend.watch("user:*")
            await backend.publish("user:1", Event("one", channel="user:1"))
            await backend.publish("room", Event("not a user", channel="room"))
            await backend.publish("user:2", Event("two", channel="user:2"))
            await backend.publish("user:3", Event(END, channel="user:3"))
            before = await deliveries.until("user:3", END)
            # Other channels may be delivered too (the in-memory backend delivers all).
            users = [(e.channel, e.data) for _, e in before if e.channel != "room"]
            assert users == [("user:1", "one"), ("user:2", "two")]

    async def test_contract_backend_delivers_everything_after_what_watch_returned(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend) as deliveries:
            sent = [await backend.publish("log", Event(str(i), channel="log")) for i in range(3)]
            complete_after = backend.watch("log")
            assert isinstance(complete_after, int)
            assert complete_after <= backend.latest_key()
            for i in range(3, 6):
                sent.append(await backend.publish("log", Event(str(i), channel="log")))
            await backend.publish("log", Event(END, channel="log"))
            got = await deliveries.until("log", END)
            keyed = [(backend.parse_id(event.id or "") or 0, event.data) for event in sent]
            wanted = [data for key, data in keyed if key > complete_after]
            assert len(wanted) >= 3  # the three sent after watch() at least
            # Nothing at or below what watch() returned is promised; everything above is.
            assert [e.data for key, e in got if key > complete_after] == wanted

    async def test_contract_backend_ids_round_trip_and_foreign_ids_do_not_parse(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend):
            published = [await backend.publish(f"c{i % 4}", Event(str(i))) for i in range(20)]
            for event in published:
                assert event.id is not None
                format_sse("", id=event.id)  # a valid id: no CR, LF or NUL
                assert re.fullmatch(r"[!-~]+", event.id), event.id  # printable, no spaces
                key = backend.parse_id(event.id)
                assert key is not None
                assert backend.format_id(key) == event.id
            assert len({event.id for event in published}) == len(published)
            for foreign in ("", "order-7", "not an id", "\u0663", "-"):
                assert backend.parse_id(foreign) is None, foreign

    async def test_contract_backend_history_answers_within_the_range_asked(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend) as deliveries:
            backend.watch("h")
            for i in range(6):
                await backend.publish("h", Event(str(i), channel="h"))
            await backend.publish("h", Event(END, channel="h"))
            pairs = await deliveries.until("h", END)
            keys = [key for key, _ in pairs]
            after, through = keys[0], keys[-2]
            found = await backend.history("h", after, through)
            if found is None:
                return  # allowed: the backend cannot tell (the in-memory backend never can)
            gone, events = found
            assert after <= gone <= through
            assert [key for key, _ in events] == [k for k in keys if gone < k <= through]
            delivered = dict(pairs)
            for key, event in events:
                assert fields([event]) == fields([delivered[key]])
                assert wire(event) == wire(delivered[key])

    async def test_contract_backend_publish_sync_from_a_thread_is_delivered_or_refused(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend) as deliveries:
            backend.watch("jobs")
            draft = Event("done", channel="jobs")
            published = await anyio.to_thread.run_sync(backend.publish_sync, "jobs", draft)
            if published is None:
                return  # allowed: the store then hands the call to its event loop
            assert published.id is not None
            assert backend.parse_id(published.id) is not None
            assert wire(published) == wire(draft.with_id(published.id))
            await deliveries.until("jobs", "done")
            assert deliveries.threads == {threading.get_ident()}

    async def test_contract_backend_statistics_are_a_dict(
        self, make_backend: BackendFactory
    ) -> None:
        backend = make_backend(1000)
        async with self.running(backend):
            assert isinstance(backend.statistics(), dict)
        assert isinstance(backend, Backend)

    # -- through a ChannelStore: delivery ------------------------------------------------------

    async def test_contract_event_reaches_every_subscriber_of_its_channel_in_order(
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
        async with store_factory() as store:
            subscriptions = [store.subscribe("room") for _ in range(3)]
            sent = [await store.send("room", {"n": i}, event="tick") for i in range(20)]
            await store.send("room", END)
            for subscription in subscriptions:
                assert fields(await until_end(subscription)) == fields(sent)
                subscription.close()

    async def test_contract_channels_are_isolated(
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
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
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
        async with store_factory() as store:
            subscription = store.subscribe("a", "b", "c")
            sent = [await store.send("abc"[i % 3], str(i)) for i in range(30)]
            await store.send("a", END)
            assert fields(await until_end(subscription)) == fields(sent)
            subscription.close()

    async def test_contract_pattern_covers_channels_that_appear_later(
        self, store_factory: Callable[..., ChannelStore]
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
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
        async with store_factory() as store:
            ids = [(await store.send(f"c{i % 4}", str(i))).id for i in range(50)]
        assert len(set(ids)) == len(ids)
        for event_id in ids:
            assert event_id is not None
            format_sse("", id=event_id)  # a valid id: no CR, LF or NUL
            assert re.fullmatch(r"[!-~]+", event_id), event_id  # printable ASCII, no spaces

    async def test_contract_custom_id_and_retry_arrive_unchanged(
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
        async with store_factory() as store:
            subscription = store.subscribe("orders")
            sent = await store.send("orders", "o", id="order-7", retry=2500, event="order")
            assert sent.id == "order-7"
            (got,) = await collect(subscription, 1, timeout=TIMEOUT)
            assert (got.data, got.id, got.retry, got.event) == ("o", "order-7", 2500, "order")
            assert b"retry: 2500\n" in got.encoded
            subscription.close()

    # -- through a ChannelStore: resume --------------------------------------------------------

    async def test_contract_resume_from_any_id_yields_exactly_the_rest(
        self, store_factory: Callable[..., ChannelStore]
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
        self, store_factory: Callable[..., ChannelStore]
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

    async def test_contract_resume_from_before_the_history_signals_a_gap_or_replays_all(
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
        async with store_factory(history=3) as store:
            sent = [await store.send("room", str(i)) for i in range(10)]
            subscription = store.subscribe("room", last_event_id=sent[0].id)
            rest: list[Event] = []
            with anyio.fail_after(TIMEOUT):
                while not rest or rest[-1].data != "9":
                    rest += await collect(subscription, 1, timeout=None)
            subscription.close()
        if rest[0].event == GAP_EVENT:
            # No silent hole: what follows the gap is an unbroken run up to the newest.
            assert gap(rest[0]) == ("expired", "room")
            assert [e.data for e in rest[1:]] == [str(i) for i in range(11 - len(rest), 10)]
            assert len(rest) >= 4
        else:  # the backend retains more than the store: all of it, from its history
            assert fields(rest) == fields(sent[1:])

    # -- through a ChannelStore: state channels and callbacks ----------------------------------

    async def test_contract_state_channel_gives_the_current_value_first(
        self, store_factory: Callable[..., ChannelStore]
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
        self, store_factory: Callable[..., ChannelStore]
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

    # -- through a ChannelStore: slow consumers and lifecycle ----------------------------------

    async def test_contract_slow_consumer_is_disconnected_and_resumes_without_loss(
        self, store_factory: Callable[..., ChannelStore]
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
        self, store_factory: Callable[..., ChannelStore]
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
        self, store_factory: Callable[..., ChannelStore]
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
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
        async with store_factory() as store:
            subscription = store.subscribe("jobs")
            sent: Any = await anyio.to_thread.run_sync(store.send_sync, "jobs", {"done": True})
            (got,) = await collect(subscription, 1, timeout=TIMEOUT)
            assert fields([got]) == fields([sent])
            subscription.close()


class NetworkedBackendContract(BackendContract):
    """``BackendContract`` plus delivery and resume across processes, for networked backends.

    Backends made by one test's ``make_backend`` must share their storage: each stands for
    one process of the same deployment.
    """

    async def test_contract_networked_event_reaches_the_subscribers_of_every_process(
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
        async with store_factory() as a, store_factory() as b:
            on_a, on_b = a.subscribe("news"), b.subscribe("news")
            sent = [await a.send("news", "from a"), await b.send("news", "from b")]
            await a.send("news", END)
            for subscription in (on_a, on_b):
                assert fields(await until_end(subscription)) == fields(sent)
                subscription.close()

    async def test_contract_networked_resume_in_another_process_yields_exactly_the_rest(
        self, store_factory: Callable[..., ChannelStore]
    ) -> None:
        async with store_factory() as a, store_factory() as b:
            live = a.subscribe("feed")
            sent = [await (a, b)[i % 2].send("feed", str(i)) for i in range(8)]
            await a.send("feed", END)
            delivered = await until_end(live)
            live.close()
            assert fields(delivered) == fields(sent)
            # b never watched "feed": what it replays comes from the backend's history.
            for index in (0, 3, 7):
                resumed = b.subscribe("feed", last_event_id=delivered[index].id)
                await a.send("feed", END)
                assert fields(await until_end(resumed)) == fields(delivered[index + 1 :])
                resumed.close()
