"""The channel log: bounded append, positions and keys, retention by count and age, waking."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_channels import Event
from sse_channels._channel import Channel, Waiter


def filled(count: int, *, capacity: int = 1000, ttl: float | None = None) -> Channel:
    """A channel with ``count`` events whose keys are 10, 20, 30, ..."""
    channel = Channel("room", capacity, ttl)
    for n in range(1, count + 1):
        channel.append(10 * n, Event(str(n), id=f"id-{n}"))
    return channel


def test_channel_positions_count_from_zero_and_end_is_the_next_one() -> None:
    channel = filled(3)
    assert (channel.start, channel.end) == (0, 3)
    assert channel.seqs == [10, 20, 30]
    assert [event.data for event in channel.events] == ["1", "2", "3"]


def test_channel_seq_at_is_the_key_of_the_event_before_a_position() -> None:
    channel = filled(3)
    assert [channel.seq_at(position) for position in range(4)] == [0, 10, 20, 30]


@pytest.mark.parametrize(("key", "position"), [(0, 0), (9, 0), (10, 1), (15, 1), (30, 3), (99, 3)])
def test_channel_position_after_a_key_is_the_first_event_above_it(key: int, position: int) -> None:
    assert filled(3).position_after(key) == position


def test_channel_position_of_a_custom_id_is_just_after_it_newest_first() -> None:
    channel = filled(3)
    channel.append(40, Event("again", id="id-2"))
    assert channel.position_of_id("id-2") == 4  # the newest of the two
    assert channel.position_of_id("id-1") == 1
    assert channel.position_of_id("unknown") is None


def test_channel_trims_in_batches_but_retains_only_its_capacity() -> None:
    channel = filled(26, capacity=10)
    # 16 beyond the capacity: not trimmed yet (more than 16, and a quarter, are needed) ...
    assert (channel.start, len(channel.events)) == (0, 26)
    # ... but only the newest 10 count as retained, and what is before is lost.
    assert channel.retained_start() == 16
    assert channel.lost_through() == 160
    channel.append(270, Event("27"))  # 17 beyond: trimmed, in one go
    assert (channel.start, len(channel.events)) == (17, 10)
    assert channel.trimmed_seq == 170
    assert channel.retained_start() == 17
    assert channel.lost_through() == 170
    assert channel.seq_at(17) == 170  # a cursor at the start still knows its last key


def test_channel_that_never_lost_anything_has_lost_through_zero() -> None:
    assert filled(5).lost_through() == 0


def test_channel_age_limit_retains_only_recent_events_and_expire_trims_them() -> None:
    channel = filled(3, ttl=60.0)
    assert channel.times is not None
    channel.times[:2] = [time.monotonic() - 120] * 2  # the first two are old
    assert channel.retained_start() == 2
    assert channel.lost_through() == 20
    channel.expire()
    assert (channel.start, [event.data for event in channel.events]) == (2, ["3"])


def test_channel_state_keeps_its_current_value_beyond_every_limit() -> None:
    channel = filled(3, ttl=60.0)
    channel.is_state = True
    assert channel.times is not None
    channel.times[:] = [time.monotonic() - 120] * 3
    assert channel.retained_start() == 2  # everything is too old, but the value stays


@given(
    capacity=st.integers(min_value=1, max_value=40),
    count=st.integers(min_value=0, max_value=300),
)
def test_channel_retains_exactly_the_newest_capacity_events_whatever_it_trimmed(
    capacity: int, count: int
) -> None:
    channel = filled(count, capacity=capacity)
    first = channel.retained_start()
    retained = channel.events[first - channel.start :]
    assert [event.data for event in retained] == [str(n) for n in range(1, count + 1)][-capacity:]
    assert channel.end == count
    assert channel.lost_through() == 10 * max(0, count - capacity)
    # Memory stays bounded: at most a quarter of the capacity (or 16) beyond it.
    assert len(channel.events) <= capacity + max(16, capacity // 4) + 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_channel_wake_rings_one_waiter_which_wakes_the_others() -> None:
    channel = filled(0)
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[None]] = [loop.create_future() for _ in range(3)]
    waiters = [Waiter() for _ in futures]
    for waiter, future in zip(waiters, futures, strict=True):
        waiter.pending = future
        channel.parked[waiter] = None
    channel.wake()
    assert channel.parked == {}  # the next event finds nobody parked
    assert [future.done() for future in futures] == [True, False, False]
    first = waiters[0]
    assert first.relay is not None
    assert list(first.relay) == waiters
    # The woken reader passes it on (Subscription._park does this after its await).
    for other in first.relay:
        if other is not first:
            assert other.ring(None)
    assert [future.done() for future in futures] == [True, True, True]


def test_waiter_that_is_not_waiting_is_not_rung() -> None:
    waiter = Waiter()
    assert waiter.ring(None) is False
    assert waiter.relay is None
