"""Property tests of the store's routing, resume and gap signals, on asyncio and trio.

Each test runs a random program against a ``ChannelStore`` and against a plain model of
what it promises, and compares the two. The model never uses ``compile_pattern``: it
matches patterns with a regex, so the routing is checked against an independent reference.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sse_channels import GAP_EVENT, ChannelStore, Event, SlowConsumerError, Subscription
from sse_channels.testing import drain

pytestmark = pytest.mark.anyio

CHANNELS = ["a", "b", "a:1", "a:2", "b:1"]
PATTERNS = ["a:*", "*:1", "*", "a*", "b*1"]

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def matches(name: str, channel: str) -> bool:
    """Does subscribing to ``name`` (a channel or a pattern) cover ``channel``?"""
    regex = ".*".join(map(re.escape, name.split("*")))
    return re.fullmatch(regex, channel, re.DOTALL) is not None


def covers(names: list[str], channel: str) -> bool:
    return any(matches(name, channel) for name in names)


def is_gap(event: Event) -> bool:
    return event.event == GAP_EVENT


def gap_of(event: Event) -> tuple[str, str]:
    decoded = json.loads(event.data)
    return decoded["reason"], decoded["channel"]


names_strategy = st.lists(st.sampled_from(CHANNELS + PATTERNS), min_size=1, max_size=3)


# -- fan-out and routing ----------------------------------------------------------------------


@dataclass
class Reader:
    subscription: Subscription
    names: list[str]
    in_task: bool
    expected: list[str] = field(default_factory=list)
    received: list[Event] = field(default_factory=list)
    closed_early: bool = False


operation = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(CHANNELS)),
    st.tuples(st.just("send"), st.sampled_from(CHANNELS)),
    st.tuples(st.just("subscribe"), names_strategy, st.booleans()),
    st.tuples(st.just("drain"), st.integers(0, 20)),
    st.tuples(st.just("close"), st.integers(0, 20)),
    st.tuples(st.just("yield")),
)


@SETTINGS
@given(program=st.lists(operation, max_size=40))
async def test_every_event_reaches_every_live_subscriber_exactly_once_in_order(
    program: list[tuple[Any, ...]],
) -> None:
    store = ChannelStore(history=10_000)
    readers: list[Reader] = []
    sent: dict[str, Event] = {}

    async def read_in_task(reader: Reader) -> None:
        async for event in reader.subscription:
            reader.received.append(event)

    async with anyio.create_task_group() as tg:
        for number, (op, *args) in enumerate(program):
            live = [r for r in readers if not r.subscription.closed]
            if op == "send":
                (channel,) = args
                event = await store.send(channel, str(number))
                sent[event.data] = event
                for reader in live:
                    if covers(reader.names, channel):
                        reader.expected.append(event.data)
            elif op == "subscribe":
                names, in_task = args
                reader = Reader(store.subscribe(*names), names, in_task)
                readers.append(reader)
                if in_task:
                    tg.start_soon(read_in_task, reader)
            elif op == "drain" and live:
                reader = live[args[0] % len(live)]
                if not reader.in_task:
                    reader.received += await drain(reader.subscription)
            elif op == "close" and live:
                reader = live[args[0] % len(live)]
                if not reader.in_task:  # a reader that drains first has everything
                    reader.received += await drain(reader.subscription)
                reader.closed_early = True
                await reader.subscription.aclose()
            elif op == "yield":
                await anyio.sleep(0)
        # Let the reader tasks catch up, then end them.
        with anyio.fail_after(5):
            for reader in readers:
                if reader.in_task and not reader.closed_early:
                    while len(reader.received) < len(reader.expected):
                        await anyio.sleep(0)
                elif not reader.closed_early:
                    reader.received += await drain(reader.subscription)
        for reader in readers:
            await reader.subscription.aclose()

    for reader in readers:
        got = [event.data for event in reader.received]
        if reader.in_task and reader.closed_early:
            # Closed while events were pending: it stops there, with no foreign event,
            # no duplicate and nothing out of order.
            assert got == reader.expected[: len(got)], (reader.names, got, reader.expected)
        else:
            assert got == reader.expected, (reader.names, got, reader.expected)
        for event in reader.received:
            assert event is sent[event.data]  # the very object sent: shared, not copied
    assert store.statistics().subscribers == 0


# -- resume -----------------------------------------------------------------------------------


@SETTINGS
@given(
    sends=st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=25),
    names=names_strategy,
)
async def test_resuming_from_any_delivered_id_yields_exactly_the_suffix(
    sends: list[str], names: list[str]
) -> None:
    store = ChannelStore(history=10_000)
    async with store.subscribe(*names) as live:
        for number, channel in enumerate(sends):
            await store.send(channel, str(number))
        delivered = await drain(live)
    assert [e.data for e in delivered] == [
        str(n) for n, channel in enumerate(sends) if covers(names, channel)
    ]
    for index in range(len(delivered)):  # "after" events join the list as they are sent
        async with store.subscribe(*names, last_event_id=delivered[index].id) as resumed:
            assert await drain(resumed) == delivered[index + 1 :]
            # ... and then it is live.
            after = await store.send(sends[0], "after")
            expected_after = [after] if covers(names, sends[0]) else []
            assert await drain(resumed) == expected_after
        if expected_after:
            delivered.append(after)


@SETTINGS
@given(
    sends=st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=30),
    names=names_strategy,
    history=st.integers(1, 4),
    pick=st.integers(0, 1000),
)
async def test_resume_signals_a_gap_whenever_the_suffix_is_no_longer_retained(
    sends: list[str], names: list[str], history: int, pick: int
) -> None:
    store = ChannelStore(history=history)
    events = [await store.send(channel, str(n)) for n, channel in enumerate(sends)]
    # Resume from any id the store handed out, on any channel.
    start = pick % len(events)
    resume_id = events[start].id

    by_channel: dict[str, list[Event]] = {}
    for event in events:
        assert event.channel is not None
        by_channel.setdefault(event.channel, []).append(event)
    expected_gaps = set()
    expected_events = []
    for channel, history_of_channel in by_channel.items():
        if not covers(names, channel):
            continue
        suffix = [e for e in history_of_channel if events.index(e) > start]
        retained = history_of_channel[-history:]
        if len(suffix) > len(retained):
            expected_gaps.add(channel)
            expected_events += retained
        else:
            expected_events += suffix
    expected_events.sort(key=events.index)

    async with store.subscribe(*names, last_event_id=resume_id) as resumed:
        got = await drain(resumed)
    gaps = [event for event in got if is_gap(event)]
    assert {gap_of(gap) for gap in gaps} == {("expired", c) for c in expected_gaps}
    assert [event for event in got if not is_gap(event)] == expected_events

    # Gap signals come in send order, where their channel's loss happened: a client that
    # reconnects after any event of the batch, a gap included, gets exactly the rest of it.
    for index, event in enumerate(got):
        async with store.subscribe(*names, last_event_id=event.id) as again:
            assert await drain(again) == got[index + 1 :]

    # A gap's id is where the retained history of its channel starts: no second gap.
    for gap in gaps:
        channel = gap_of(gap)[1]
        async with store.subscribe(channel, last_event_id=gap.id) as again:
            assert await drain(again) == by_channel[channel][-history:]


@SETTINGS
@given(
    program=st.lists(
        st.one_of(st.sampled_from(CHANNELS), st.just("read")), min_size=1, max_size=40
    ),
    names=names_strategy,
    history=st.integers(1, 4),
    policy=st.sampled_from(["drop_oldest", "disconnect"]),
)
async def test_a_live_reader_gets_a_gap_exactly_where_it_fell_behind(
    program: list[str], names: list[str], history: int, policy: Any
) -> None:
    store = ChannelStore(history=history, slow_consumer=policy)
    # The model: per channel, what the reader has not read yet.
    pending: dict[str, list[Event]] = {}
    async with store.subscribe(*names) as subscription:
        for number, step in enumerate([*program, "read"]):
            if step != "read":
                event = await store.send(step, str(number))
                if covers(names, step):
                    pending.setdefault(step, []).append(event)
                continue
            lagging = {c: e for c, e in pending.items() if len(e) > history}
            if lagging and policy == "disconnect":
                with pytest.raises(SlowConsumerError):
                    await drain(subscription)
                assert subscription.close_reason == "slow_consumer"
                return
            keyed: list[tuple[int, int, Event | str]] = []
            for channel, unread in pending.items():
                kept = unread[-history:]
                if len(unread) > history:
                    # The gap stands where the last dropped event stood.
                    keyed.append((events_key(unread[-history - 1]), 0, channel))
                keyed += [(events_key(e), 1, e) for e in kept]
            keyed.sort(key=lambda item: item[:2])
            got = await drain(subscription)
            assert len(got) == len(keyed), (got, keyed)
            for event, (_, _, expected) in zip(got, keyed, strict=True):
                if isinstance(expected, str):
                    assert gap_of(event) == ("slow_consumer", expected)
                else:
                    assert event == expected
            pending.clear()


def events_key(event: Event) -> int:
    assert event.id is not None
    return int(event.id.rsplit("-", 1)[1])
