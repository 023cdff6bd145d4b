from __future__ import annotations

import contextlib
import gc
import json
import tracemalloc
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_channels import (
    ChannelStore,
    Event,
    InvalidMemberError,
    MemoryPresence,
    MetadataTooLargeError,
    Presence,
    PresenceBackend,
    PresenceSession,
    PresenceView,
    SlowConsumerError,
    StoreClosedError,
)
from sse_channels.testing import drain
from sse_channels.testing.presence_contract import (
    PresenceContract,
    PresenceFactory,
    follow_until,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryPresenceContract(PresenceContract):
    @pytest.fixture
    def make_presence(self) -> PresenceFactory:
        return MemoryPresence


# -- validation: typed errors at the call, nothing registered --------------------------


@pytest.fixture
async def running() -> AsyncIterator[Presence]:
    store = ChannelStore()
    async with store, Presence(store) as presence:
        yield presence


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("member", "error"),
    [
        ("", InvalidMemberError),
        ("x" * 129, InvalidMemberError),
        (" alice", InvalidMemberError),
        ("al\nice", InvalidMemberError),
        ("al\x00ice", InvalidMemberError),
        (7, TypeError),
        (None, TypeError),
    ],
)
async def test_presence_join_refuses_a_bad_member_id_at_the_call(
    running: Presence, member: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        running.join("room", member)
    assert running.statistics()["sessions"] == 0
    assert running.statistics()["pending"] == 0


@pytest.mark.anyio
async def test_presence_join_accepts_a_member_id_of_128_characters(running: Presence) -> None:
    async with running.join("room", "é" * 128):
        assert await running.count("room") == 1


@pytest.mark.anyio
async def test_presence_join_refuses_oversized_or_non_json_metadata(running: Presence) -> None:
    with pytest.raises(MetadataTooLargeError, match="1025 bytes"):
        running.join("room", "alice", {"x": "a" * 1017})
    with pytest.raises(TypeError, match="JSON"):
        running.join("room", "alice", {"x": object()})
    with pytest.raises(TypeError, match="JSON"):
        running.join("room", "alice", {"x": float("nan")})
    with pytest.raises(TypeError, match="dict"):
        running.join("room", "alice", ["not", "an", "object"])
    assert isinstance(MetadataTooLargeError("x"), ValueError)
    assert running.statistics()["sessions"] == 0
    async with running.join("room", "alice", {"x": "a" * 1016}):  # exactly 1024 bytes
        assert await running.members("room") == {"alice": [{"x": "a" * 1016}]}


@pytest.mark.anyio
@pytest.mark.parametrize("channel", ["", "a*", "presence:room", "bad\nname"])
async def test_presence_join_refuses_a_bad_channel(running: Presence, channel: str) -> None:
    with pytest.raises(ValueError):
        running.join(channel, "alice")
    with pytest.raises(ValueError):
        await running.members(channel)


@pytest.mark.anyio
async def test_presence_join_before_it_runs_or_after_it_closed_says_so() -> None:
    store = ChannelStore()
    presence = Presence(store)
    with pytest.raises(RuntimeError, match="async with presence"):
        presence.join("room", "alice")
    async with store:
        async with presence:
            pass
        with pytest.raises(StoreClosedError):
            presence.join("room", "alice")


def test_presence_refuses_a_second_presence_on_one_store_and_bad_options() -> None:
    store = ChannelStore()
    Presence(store)
    with pytest.raises(ValueError, match="snapshot provider already"):
        Presence(store)
    for options in ({"max_meta_bytes": 1}, {"count_interval": 0}, {"count_interval": "1"}):
        with pytest.raises(ValueError):
            Presence(ChannelStore(), **options)
    with pytest.raises(TypeError):
        Presence(ChannelStore(), counts_only="yes")  # type: ignore[arg-type]


def test_memory_presence_satisfies_the_protocol() -> None:
    assert isinstance(MemoryPresence(), PresenceBackend)


# -- bounded: churn leaves nothing behind ------------------------------------------------


@pytest.mark.anyio
async def test_presence_churn_of_10000_members_leaves_no_state_and_no_memory() -> None:
    store = ChannelStore(history=100)
    async with store, Presence(store) as presence:
        backend = presence.backend

        async def churn() -> None:
            sessions = [presence.join("room", f"user-{n}", {"n": n}) for n in range(10_000)]
            await presence.flush()
            assert await presence.count("room") == 10_000
            for session in sessions:
                session.leave()
            await presence.flush()

        # Traced from the warm-up on, so that the events the second churn pushes out of
        # the store's log of presence:room count as freed.
        tracemalloc.start()
        await churn()  # warm up: the store's log of presence:room is full already
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        await churn()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert await presence.count("room") == 0
        assert backend.statistics() == {"channels": 0, "members": 0, "connections": 0}
        assert presence.statistics()["sessions"] == 0
        # 10,000 members held about 4 MB; what is left is noise (the log is bounded).
        assert after - before < 64 * 1024, after - before


# -- PresenceView: any order, any repeats, the same list -------------------------------


def _changes(operations: list[tuple[int, bool]]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Versioned join/leave events for member ``m<n>``, and the final member list."""
    present: dict[str, Any] = {}
    events: list[tuple[str, str]] = []
    for version, (member, join) in enumerate(operations, start=1):
        name = f"m{member}"
        if join and name not in present:
            present[name] = [{"v": version}]
            meta = json.dumps({"v": version})
            events.append(("join", f'{{"member":"{name}","v":{version},"meta":{meta}}}'))
        elif not join and name in present:
            del present[name]
            events.append(("leave", f'{{"member":"{name}","v":{version}}}'))
    return events, present


@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=40),
    st.randoms(use_true_random=False),
)
def test_presence_view_rebuilds_the_list_whatever_the_order_and_repeats(
    operations: list[tuple[int, bool]], rnd: Any
) -> None:
    events, present = _changes(operations)
    shuffled = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(shuffled)
    view = PresenceView()
    for kind, data in shuffled:
        view.apply(kind, data)
    assert view.members == present
    assert view.count == len(present)


def _as_diffs(events: list[tuple[str, str]], cuts: list[int]) -> list[tuple[str, str]]:
    """The events grouped into ``diff`` events at ``cuts`` (a group of one stays as is)."""
    grouped: list[tuple[str, str]] = []
    bounds = sorted({0, len(events), *(c for c in cuts if 0 < c < len(events))})
    for start, end in pairwise(bounds):
        group = events[start:end]
        if len(group) == 1:
            grouped += group
            continue
        joins = [data for kind, data in group if kind == "join"]
        leaves = [data for kind, data in group if kind == "leave"]
        grouped.append(("diff", f'{{"joins":[{",".join(joins)}],"leaves":[{",".join(leaves)}]}}'))
    return grouped


@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=40),
    st.lists(st.integers(0, 40), max_size=10),
    st.randoms(use_true_random=False),
)
def test_presence_view_rebuilds_the_list_from_diffs_whatever_the_grouping_and_order(
    operations: list[tuple[int, bool]], cuts: list[int], rnd: Any
) -> None:
    events, present = _changes(operations)
    grouped = _as_diffs(events, cuts)
    shuffled = grouped + rnd.sample(grouped, k=len(grouped) // 2)
    rnd.shuffle(shuffled)
    view = PresenceView()
    for kind, data in shuffled:
        assert view.apply(kind, data)
    assert view.members == present
    assert view.count == len(present)


def _snapshot_after(events: list[tuple[str, str]], cut: int) -> str:
    """The snapshot's data as of ``events[:cut]``, with the version it covers."""
    state: dict[str, tuple[int, Any]] = {}
    for kind, data in events[:cut]:
        body = json.loads(data)
        if kind == "join":
            state[body["member"]] = (body["v"], [body["meta"]])
        else:
            state.pop(body["member"], None)
    version = json.loads(events[cut - 1][1])["v"] if cut else 0
    members = {m: {"v": v, "metas": metas} for m, (v, metas) in state.items()}
    return json.dumps({"v": version, "members": members})


@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=40),
    st.integers(0, 40),
    st.integers(0, 40),
)
def test_presence_view_snapshot_at_any_point_then_any_changes_since_rebuilds_the_list(
    operations: list[tuple[int, bool]], cut: int, replay_from: int
) -> None:
    events, present = _changes(operations)
    cut = min(cut, len(events))
    snapshot = _snapshot_after(events, cut)
    # A reader gets changes from some point at or before the cut (repeats), the snapshot,
    # and everything after; a stale reader's list is replaced.
    view = PresenceView()
    view.apply("join", '{"member":"ghost","v":0,"meta":{}}')
    start = min(replay_from, cut)
    for kind, data in events[start:cut]:
        view.apply(kind, data)
    view.apply("snapshot", snapshot)
    for kind, data in events[start:]:
        view.apply(kind, data)
    assert view.members == present


@settings(max_examples=500)  # the order that matters is one among many shuffles
@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=40),
    st.integers(0, 40),
    st.randoms(use_true_random=False),
)
def test_presence_view_snapshot_anywhere_among_shuffled_repeated_changes_rebuilds_the_list(
    operations: list[tuple[int, bool]], cut: int, rnd: Any
) -> None:
    # Changes from several processes reach a stream in any order: a change newer than a
    # snapshot may come before it, and must not be undone by it (a leave included).
    events, present = _changes(operations)
    cut = min(cut, len(events))
    received = events + rnd.sample(events, k=len(events) // 3)
    rnd.shuffle(received)
    received.insert(rnd.randint(0, len(received)), ("snapshot", _snapshot_after(events, cut)))
    view = PresenceView()
    for kind, data in received:
        view.apply(kind, data)
    assert view.members == present
    assert view.count == len(present)


def test_presence_view_ignores_other_events_and_reads_counts() -> None:
    view = PresenceView()
    assert view.apply("message", "hello") is False
    assert view.apply("count", '{"count":12}') is True
    assert view.count == 12


# -- resume: whatever was missed, the rebuilt list is exact -------------------------------

_OPS = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2), st.booleans()), max_size=25)


@settings(max_examples=60, deadline=None)
@given(before=_OPS, away=_OPS, history=st.integers(1, 8), resume_at=st.integers(0, 30))
def test_presence_resumed_reader_rebuilds_the_exact_list(
    before: list[tuple[int, int, bool]],
    away: list[tuple[int, int, bool]],
    history: int,
    resume_at: int,
) -> None:
    """Members m0..m4 with up to three connections each come and go; a reader leaves at
    some point, the rest happens while it is away (more than history may hold), and it
    resumes from the last id it got: its list must equal the presence's."""

    async def main() -> None:
        store = ChannelStore(history=history)
        async with store, Presence(store) as presence:
            sessions: dict[tuple[int, int], PresenceSession] = {}

            async def run(ops: list[tuple[int, int, bool]]) -> None:
                for member, tab, join in ops:
                    held = sessions.pop((member, tab), None)
                    if held is not None:
                        held.leave()
                    if join:
                        sessions[member, tab] = presence.join("room", f"m{member}", {"t": tab})
                await presence.flush()

            feed = store.subscribe("presence:room")
            view = PresenceView()
            await run(before)
            events: list[Event] = await feed.receive_batch()  # the snapshot first
            with contextlib.suppress(SlowConsumerError):  # fell behind: it resumes anyway
                events += await drain(feed)
            cut = min(resume_at, len(events))
            got = events[: max(cut, 1)]
            for event in got:
                view.apply(event.event, event.data)
            last_id = [e.id for e in got if e.id is not None][-1]
            feed.close()
            await run(away)
            async with store.subscribe("presence:room", last_event_id=last_id) as again:
                for event in await drain(again):
                    view.apply(event.event, event.data)
                # Whatever it got, a snapshot or the changes, the list is the presence's.
                expected = await presence.members("room")
                assert set(view.members) == set(expected)
            for held in sessions.values():
                held.leave()

    anyio.run(main)


@pytest.mark.anyio
async def test_presence_counts_only_room_of_100000_members_sends_a_few_numbers() -> None:
    store = ChannelStore()
    async with (
        store,
        Presence(store, counts_only=True, count_interval=0.2) as presence,
        store.subscribe("presence:big") as feed,
    ):
        seen: list[Event] = []
        sessions = [presence.join("big", f"user-{n}") for n in range(100_000)]
        await presence.flush()
        assert await presence.count("big") == 100_000
        await follow_until(feed, PresenceView(), lambda v: v.count == 100_000, seen=seen)
        # A number now and then, not 100,000 joins, and never the member list.
        assert {e.event for e in seen} == {"count"}
        assert len(seen) < 20
        assert max(len(e.data) for e in seen) < 20
        for session in sessions:
            session.leave()
        await presence.flush()
        await follow_until(feed, PresenceView(), lambda v: v.count == 0)
        assert presence.backend.statistics()["members"] == 0
