"""The contract every [PresenceBackend][sse_channels.PresenceBackend] must meet, as a pytest suite.

A presence backend's test module subclasses ``PresenceContract`` and provides the fixture
``make_presence``: a callable that returns a new backend. Backends made by one test stand
for processes of one deployment; a networked backend lets them share their storage (one
key prefix per test) and subclasses ``NetworkedPresenceContract``, which adds the tests of
one view across processes and of a process that stops without cleaning up. Its
``make_store_backend`` fixture returns the store backend those processes share (a new one
per call), and ``expiry`` the bound, in seconds, within which a stopped process's members
leave::

    class TestMyPresence(NetworkedPresenceContract):
        @pytest.fixture
        def make_presence(self) -> PresenceFactory:
            return lambda: MyPresence(ttl=1.0)

        @pytest.fixture
        def make_store_backend(self) -> StoreBackendFactory:
            return lambda: MyBackend()

        @pytest.fixture
        def expiry(self) -> float:
            return 1.5

Everything goes through the public API (``ChannelStore``, ``Presence``, ``PresenceView``),
and a reader is checked by what it can rebuild from the events it receives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import pytest

from .. import ChannelStore, Event, Presence, PresenceBackend, PresenceView, Subscription

if TYPE_CHECKING:
    from ..backends import Backend

__all__ = [
    "NetworkedPresenceContract",
    "PresenceContract",
    "PresenceFactory",
    "StoreBackendFactory",
    "follow_until",
]

#: Makes a new presence backend (one per process of a deployment).
PresenceFactory = Callable[[], PresenceBackend]
#: Makes a new store backend; ``None`` means the store's default (in-memory).
StoreBackendFactory = Callable[[], "Backend | None"]

TIMEOUT = 10.0


async def follow_until(
    subscription: Subscription,
    view: PresenceView,
    done: Callable[[PresenceView], bool],
    *,
    timeout: float = TIMEOUT,
    seen: list[Event] | None = None,
) -> PresenceView:
    """Apply what ``subscription`` receives to ``view`` until ``done(view)``; ``view``.

    Reads at least one batch, then checks ``done`` after each.

    Raises:
        TimeoutError: ``done`` did not become true within ``timeout`` seconds.
    """
    with anyio.fail_after(timeout):
        while True:
            batch = await subscription.receive_batch()
            if not batch:
                raise AssertionError(f"the subscription ended: {subscription.close_reason}")
            for event in batch:
                if seen is not None:
                    seen.append(event)
                view.apply(event.event, event.data)
            if done(view):
                break
    return view


def _change_kinds(events: list[Event]) -> list[str]:
    """The kinds of the events, with each ``diff`` spelt out as its joins and leaves."""
    kinds: list[str] = []
    for event in events:
        if event.event == "diff":
            body = json.loads(event.data)
            kinds += ["join"] * len(body["joins"]) + ["leave"] * len(body["leaves"])
        elif event.event is not None:
            kinds.append(event.event)
    return kinds


class PresenceContract:
    """Joins, leaves, snapshots and resume, on one process."""

    pytestmark: ClassVar = [pytest.mark.anyio]

    @pytest.fixture
    def make_presence(self) -> PresenceFactory:
        raise NotImplementedError("a presence backend's test class provides make_presence")

    @pytest.fixture
    def make_store_backend(self) -> StoreBackendFactory:
        return lambda: None

    @asynccontextmanager
    async def process(
        self,
        make_presence: PresenceFactory,
        make_store_backend: StoreBackendFactory,
        **options: Any,
    ) -> AsyncIterator[Presence]:
        """One process of a deployment: a running store and its running presence."""
        store = ChannelStore(make_store_backend())
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(store)
            presence = Presence(store, make_presence(), **options)
            await stack.enter_async_context(presence)
            yield presence

    async def test_contract_presence_satisfies_the_protocol(
        self, make_presence: PresenceFactory
    ) -> None:
        assert isinstance(make_presence(), PresenceBackend)

    async def test_contract_presence_one_member_with_three_connections_joins_once_leaves_once(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        async with self.process(make_presence, make_store_backend) as presence:
            seen: list[Event] = []
            async with presence.store.subscribe("presence:room") as feed:
                view = await follow_until(feed, PresenceView(), lambda v: True, seen=seen)
                tabs = [presence.join("room", "alice", {"tab": n}) for n in range(3)]
                await presence.flush()
                assert await presence.count("room") == 1
                assert sorted(m["tab"] for m in (await presence.members("room"))["alice"]) == [
                    0,
                    1,
                    2,
                ]
                tabs[0].leave()
                tabs[1].leave()
                await presence.flush()
                assert await presence.members("room") == {"alice": [{"tab": 2}]}
                tabs[2].leave()
                await presence.flush()
                assert await presence.members("room") == {}
                await follow_until(feed, view, lambda v: "alice" not in v.members, seen=seen)
                with anyio.move_on_after(0.3):
                    await follow_until(feed, view, lambda v: False, seen=seen)
            kinds = _change_kinds(seen)
            assert kinds.count("join") == 1, kinds
            assert kinds.count("leave") == 1, kinds
            assert kinds.index("join") < kinds.index("leave")

    async def test_contract_presence_late_subscriber_gets_a_snapshot_then_diffs(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        async with self.process(make_presence, make_store_backend) as presence:
            async with presence.join("room", "alice", {"name": "Alice"}):
                bob = presence.join("room", "bob")
                await presence.flush()
                seen: list[Event] = []
                async with presence.store.subscribe("presence:room") as feed:
                    view = await follow_until(feed, PresenceView(), lambda v: True, seen=seen)
                    assert seen[0].event == "snapshot"
                    assert view.members == {"alice": [{"name": "Alice"}], "bob": [{}]}
                    bob.leave()
                    async with presence.join("room", "carol"):
                        await follow_until(
                            feed, view, lambda v: set(v.members) == {"alice", "carol"}, seen=seen
                        )
                    await follow_until(feed, view, lambda v: set(v.members) == {"alice"})
            kinds = _change_kinds(seen)
            assert kinds[0] == "snapshot"
            assert "snapshot" not in kinds[1:], kinds
            assert {"leave", "join"} <= set(kinds[1:])

    async def test_contract_presence_storm_comes_in_diffs_and_each_member_joins_once(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        async with self.process(make_presence, make_store_backend) as presence:
            seen: list[Event] = []
            async with presence.store.subscribe("presence:room") as feed:
                view = await follow_until(feed, PresenceView(), lambda v: True, seen=seen)
                # 100 members with two tabs each, all at once: one batch for the worker.
                tabs = [presence.join("room", f"user-{n % 100}", {"tab": n}) for n in range(200)]
                await presence.flush()
                await follow_until(feed, view, lambda v: len(v.members) == 100, seen=seen)
                members = await presence.members("room")
                assert set(view.members) == set(members)
                for member, (meta,) in view.members.items():  # the first tab's, from its join
                    assert meta in members[member], (member, meta)
                for tab in tabs:
                    tab.leave()
                await presence.flush()
                await follow_until(feed, view, lambda v: not v.members, seen=seen)
            diffs = [json.loads(e.data) for e in seen if e.event == "diff"]
            assert diffs, [e.event for e in seen]
            assert all(len(d["joins"]) + len(d["leaves"]) <= 32 for d in diffs)
            kinds = _change_kinds(seen[1:])
            assert kinds.count("join") == kinds.count("leave") == 100, kinds

    async def test_contract_presence_resume_within_history_gets_the_changes_it_missed(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        async with self.process(make_presence, make_store_backend) as presence:
            store = presence.store
            first = presence.join("room", "alice")
            await presence.flush()
            async with store.subscribe("presence:room") as feed:
                view = await follow_until(feed, PresenceView(), lambda v: "alice" in v.members)
                last_id = feed.last_event_id
            # Away: bob joins, alice leaves.
            bob = presence.join("room", "bob")
            first.leave()
            await presence.flush()
            seen: list[Event] = []
            async with store.subscribe("presence:room", last_event_id=last_id) as feed:
                await follow_until(feed, view, lambda v: set(v.members) == {"bob"}, seen=seen)
            assert "snapshot" not in [e.event for e in seen]
            assert view.members == await presence.members("room")
            bob.leave()

    async def test_contract_presence_resume_from_an_unknown_id_gets_a_new_snapshot(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        async with (
            self.process(make_presence, make_store_backend) as presence,
            presence.join("room", "alice"),
        ):
            view = PresenceView()
            view.apply("join", '{"member":"ghost","v":1,"meta":{}}')  # a stale list
            seen: list[Event] = []
            async with presence.store.subscribe("presence:room", last_event_id="nope-1") as feed:
                await follow_until(feed, view, lambda v: "ghost" not in v.members, seen=seen)
            assert [e.event for e in seen][:1] == ["snapshot"]
            assert view.members == {"alice": [{}]}

    async def test_contract_presence_channels_are_separate_and_sessions_join_several(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        async with self.process(make_presence, make_store_backend) as presence:
            async with presence.join(["a", "b"], "alice"), presence.join("b", "bob"):
                assert set(await presence.members("a")) == {"alice"}
                assert set(await presence.members("b")) == {"alice", "bob"}
                assert await presence.count("c") == 0
            await presence.flush()
            assert await presence.count("a") == await presence.count("b") == 0

    async def test_contract_presence_churn_leaves_no_state_behind(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        async with self.process(make_presence, make_store_backend) as presence:
            sessions = [presence.join(f"room-{n % 7}", f"user-{n % 50}") for n in range(400)]
            await presence.flush()
            assert sum([await presence.count(f"room-{n}") for n in range(7)]) == 7 * 50
            for session in sessions:
                session.leave()
            await presence.flush()
            for n in range(7):
                assert await presence.members(f"room-{n}") == {}
            stats = presence.statistics()
            assert stats["sessions"] == 0
            assert stats["pending"] == 0

    async def test_contract_presence_counts_only_room_sends_a_count_not_a_list(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        options = {"counts_only": lambda name: name == "big", "count_interval": 0.05}
        async with self.process(make_presence, make_store_backend, **options) as presence:
            seen: list[Event] = []
            async with presence.store.subscribe("presence:big") as feed:
                sessions = [presence.join("big", f"user-{n}") for n in range(30)]
                await follow_until(feed, PresenceView(), lambda v: v.count == 30, seen=seen)
                assert {e.event for e in seen} == {"count"}
                for session in sessions[:10]:
                    session.leave()
                await follow_until(feed, PresenceView(), lambda v: v.count == 20)
            # A late reader gets the count first (it is a state channel).
            async with presence.store.subscribe("presence:big") as feed:
                (first, *_) = await feed.receive_batch()
                assert (first.event, first.data) == ("count", '{"count":20}')
            for session in sessions[10:]:
                session.leave()

    async def test_contract_presence_closing_leaves_and_announces(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        store = ChannelStore(make_store_backend())
        async with store:
            presence = Presence(store, make_presence())
            async with presence:
                presence.join("room", "alice")
                await presence.flush()
                feed = store.subscribe("presence:room")
                view = await follow_until(feed, PresenceView(), lambda v: "alice" in v.members)
            await follow_until(feed, view, lambda v: not v.members)
            feed.close()
            assert presence.closed


class NetworkedPresenceContract(PresenceContract):
    """One view across processes; a stopped process's members leave within the bound."""

    @pytest.fixture
    def expiry(self) -> float:
        raise NotImplementedError("a networked presence's test class provides expiry")

    async def test_contract_networked_presence_two_processes_share_one_view(
        self, make_presence: PresenceFactory, make_store_backend: StoreBackendFactory
    ) -> None:
        async with (
            self.process(make_presence, make_store_backend) as one,
            self.process(make_presence, make_store_backend) as two,
            two.store.subscribe("presence:room") as feed,
        ):
            view = await follow_until(feed, PresenceView(), lambda v: True)
            a = one.join("room", "alice", {"at": 1})
            b = two.join("room", "alice", {"at": 2})
            c = two.join("room", "bob")
            await one.flush()
            await two.flush()
            for process in (one, two):
                members = await process.members("room")
                assert sorted(members["alice"], key=lambda m: m["at"]) == [
                    {"at": 1},
                    {"at": 2},
                ]
                assert await process.count("room") == 2
            await follow_until(feed, view, lambda v: set(v.members) == {"alice", "bob"})
            a.leave()  # alice still has a connection on the other process
            c.leave()
            await follow_until(feed, view, lambda v: set(v.members) == {"alice"})
            b.leave()
            await follow_until(feed, view, lambda v: not v.members)

    async def test_contract_networked_presence_stopped_process_members_leave_within_the_bound(
        self,
        make_presence: PresenceFactory,
        make_store_backend: StoreBackendFactory,
        expiry: float,
    ) -> None:
        async with self.process(make_presence, make_store_backend) as one:
            store = ChannelStore(make_store_backend())
            gone = Presence(store, make_presence())
            async with store, gone:
                gone.join("room", "dora")
                await gone.flush()
                # The process stops: its store first, so nothing can be announced, and the
                # presence leaves its members to expire.
                await store.aclose()
            assert gone.closed
            assert await one.count("room") == 1
            async with one.store.subscribe("presence:room") as feed:
                view = await follow_until(feed, PresenceView(), lambda v: "dora" in v.members)
                started = anyio.current_time()
                await follow_until(feed, view, lambda v: not v.members, timeout=expiry + 5)
                took = anyio.current_time() - started
            assert took <= expiry + 1.0, took
            assert await one.count("room") == 0
