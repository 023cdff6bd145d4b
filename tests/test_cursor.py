"""The cursor: where ``place`` starts a reader, and what ``take`` hands it from the log."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_channels import Event
from sse_channels._channel import Channel
from sse_channels._cursor import Cursor, Policy, place, take


def filled(count: int, *, capacity: int = 1000, state: bool = False) -> Channel:
    """A channel with ``count`` events whose keys are 10, 20, 30, ..."""
    channel = Channel("room", capacity, None)
    channel.is_state = state
    for n in range(1, count + 1):
        channel.append(10 * n, Event(str(n)))
    return channel


def data(events: list[Event] | None) -> list[str]:
    assert events is not None
    return [event.data for event in events]


# -- place ------------------------------------------------------------------------------------


def test_place_without_an_id_starts_live_at_the_end() -> None:
    cursor, gap, fetch = place(filled(3), None, 0)
    assert (cursor.position, cursor.skip, gap, fetch) == (3, None, None, None)


def test_place_after_a_retained_key_starts_just_after_it() -> None:
    cursor, gap, fetch = place(filled(5), 20, 0)
    assert (cursor.position, cursor.skip, gap, fetch) == (2, None, None, None)


def test_place_after_an_unknown_id_starts_live_with_a_gap_at_the_latest_key() -> None:
    cursor, gap, fetch = place(filled(3), -1, 777)
    assert (cursor.position, gap, fetch) == (3, ("unknown_id", 777), None)


def test_place_before_the_history_starts_at_the_retained_start_with_a_gap() -> None:
    channel = filled(10, capacity=4)
    cursor, gap, fetch = place(channel, 10, 0)
    assert cursor.position == 6
    assert gap == ("expired", 60)  # the last key lost: resuming from it is complete
    assert fetch is None


def test_place_right_at_the_history_edge_has_no_gap() -> None:
    cursor, gap, _ = place(filled(10, capacity=4), 60, 0)
    assert (cursor.position, gap) == (6, None)


def test_place_before_what_the_backend_delivered_here_fetches_the_range_between() -> None:
    channel = filled(3)
    channel.complete_after = 20  # the backend delivers this process events after key 20
    cursor, gap, fetch = place(channel, 5, 0)
    assert (cursor.position, gap) == (2, None)
    assert fetch == (5, 20)


def test_place_after_a_key_newer_than_the_log_skips_up_to_it_as_events_arrive() -> None:
    channel = filled(3)
    cursor, gap, fetch = place(channel, 50, 0)
    assert (cursor.position, cursor.skip, gap, fetch) == (3, 50, None, None)
    channel.append(40, Event("4"))  # sent before the id: the reader had it
    assert take(cursor, "disconnect", None) == ([], None, 0, 0)
    assert cursor.skip == 50
    channel.append(50, Event("5"))
    channel.append(60, Event("6"))
    events, slow, dropped, coalesced = take(cursor, "disconnect", None)
    assert (data(events), slow, dropped, coalesced) == (["6"], None, 0, 0)
    assert cursor.skip is None


@pytest.mark.parametrize(("resume", "position"), [(None, 2), (-1, 2), (10, 2), (30, 3)])
def test_place_on_a_state_channel_gives_the_current_value_unless_the_reader_has_it(
    resume: int | None, position: int
) -> None:
    cursor, gap, fetch = place(filled(3, state=True), resume, 99)
    assert (cursor.position, gap, fetch) == (position, None, None)


def test_place_on_an_empty_state_channel_waits_for_its_first_value() -> None:
    cursor, _, _ = place(filled(0, state=True), None, 0)
    assert cursor.position == 0


# -- take -------------------------------------------------------------------------------------


def test_take_hands_out_everything_past_the_cursor_and_moves_it_to_the_end() -> None:
    channel = filled(5)
    cursor = Cursor(channel, 2)
    events, gap, dropped, coalesced = take(cursor, "disconnect", None)
    assert (data(events), gap, dropped, coalesced) == (["3", "4", "5"], None, 0, 0)
    assert cursor.position == 5
    assert take(cursor, "disconnect", None) == ([], None, 0, 0)


def test_take_shares_the_events_of_the_log_without_copying_them() -> None:
    channel = filled(2)
    events, *_ = take(Cursor(channel, 0), "disconnect", None)
    assert events is not None
    assert all(a is b for a, b in zip(events, channel.events, strict=True))


def test_take_for_a_reader_behind_the_history_ends_it_with_disconnect() -> None:
    channel = filled(10, capacity=4)
    cursor = Cursor(channel, 1)
    assert take(cursor, "disconnect", None) == (None, None, 0, 0)
    assert cursor.position == 1  # untouched: the subscription ends, its last id stands


def test_take_for_a_reader_behind_the_history_skips_to_it_with_drop_oldest() -> None:
    channel = filled(10, capacity=4)
    cursor = Cursor(channel, 1)
    events, gap, dropped, coalesced = take(cursor, "drop_oldest", None)
    assert (data(events), gap, dropped, coalesced) == (["7", "8", "9", "10"], 60, 5, 0)


def test_take_with_max_lag_keeps_only_the_newest_max_lag_events() -> None:
    cursor = Cursor(filled(10), 0)
    events, gap, dropped, _ = take(cursor, "drop_oldest", 3)
    assert (data(events), gap, dropped) == (["8", "9", "10"], 70, 7)
    assert take(Cursor(filled(10), 0), "disconnect", 3) == (None, None, 0, 0)
    events, gap, _, _ = take(Cursor(filled(10), 7), "disconnect", 3)
    assert (data(events), gap) == (["8", "9", "10"], None)  # exactly max_lag behind is fine


def test_take_on_a_state_channel_coalesces_to_the_latest_value() -> None:
    channel = filled(10, capacity=4, state=True)
    events, gap, dropped, coalesced = take(Cursor(channel, 0), "disconnect", 2)
    assert (data(events), gap, dropped, coalesced) == (["10"], None, 0, 9)


def test_take_to_record_keeps_every_state_value_and_reports_what_was_missed() -> None:
    state = filled(3, state=True)
    events, gap, _, coalesced = take(Cursor(state, 0), "record", None)
    assert (data(events), gap, coalesced) == (["1", "2", "3"], None, 0)
    trimmed = filled(10, capacity=4)
    events, gap, dropped, _ = take(Cursor(trimmed, 2), "record", None)
    assert (data(events), gap, dropped) == (["7", "8", "9", "10"], 60, 4)


def test_take_after_everything_unread_expired_returns_only_the_gap() -> None:
    channel = Channel("room", 1000, 60.0)
    for n in range(1, 4):
        channel.append(10 * n, Event(str(n)))
    assert channel.times is not None
    channel.times[:] = [0.0] * 3  # long ago
    cursor = Cursor(channel, 0)
    assert take(cursor, "drop_oldest", None) == ([], 30, 3, 0)
    assert cursor.position == 3


@given(
    capacity=st.integers(min_value=1, max_value=20),
    steps=st.lists(st.tuples(st.integers(min_value=0, max_value=30), st.booleans()), max_size=30),
    policy=st.sampled_from(["drop_oldest", "record"]),
    max_lag=st.one_of(st.none(), st.integers(min_value=1, max_value=25)),
)
def test_take_accounts_for_every_event_once_in_order(
    capacity: int, steps: list[tuple[int, bool]], policy: Policy, max_lag: int | None
) -> None:
    # Sends and reads interleaved at random: every event sent is either handed out or
    # counted as dropped, never both, never twice; what is handed out is in order; and
    # a gap stands exactly where the skipped events end.
    channel = Channel("room", capacity, None)
    cursor = Cursor(channel, 0)
    sent = handed = dropped_total = 0
    last = 0
    for count, read in steps:
        for _ in range(count):
            sent += 1
            channel.append(sent, Event(str(sent)))
        if not read:
            continue
        events, gap, dropped, coalesced = take(
            cursor, policy, max_lag if policy != "record" else None
        )
        assert events is not None
        assert coalesced == 0
        keys = [int(event.data) for event in events]
        if gap is not None:
            assert dropped > 0
            assert gap == last + dropped  # the last key skipped
            last = gap
        else:
            assert dropped == 0
        assert keys == list(range(last + 1, last + 1 + len(keys)))
        if keys:
            last = keys[-1]
        handed += len(keys)
        dropped_total += dropped
        assert cursor.position == channel.end
    assert handed + dropped_total + (channel.end - cursor.position) == sent
