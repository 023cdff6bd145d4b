"""The Redis backend's pure parts, without Redis: entry format, epoch and ids, read plan, scripts.

Property tests pin the encoder/decoder round trip and the read plan's ordering: whatever
the streams hold, a reply goes out in ``n`` order, each entry once.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_channels import Event
from sse_channels.backends.redis._entry import MalformedEntry, decode, encode
from sse_channels.backends.redis._epoch import MASK, SHIFT, Epoch, label_of
from sse_channels.backends.redis._keys import Keys
from sse_channels.backends.redis._plan import ReadPlan
from sse_channels.backends.redis._scripts import SCRIPT_NAMES, Script, Scripts, load

TEXT = st.text(st.characters(codec="utf-8"))
EVENT_TYPES = st.none() | st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n\0"), min_size=1
).filter(lambda t: t not in ("error", "open", "gap"))
IDS = st.none() | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)
RETRIES = st.none() | st.integers(min_value=0, max_value=2**40)


def entry(
    n: int, previous: int, event: Event, token: bytes = b"tok.1"
) -> tuple[bytes, list[bytes]]:
    """The entry ``publish.lua`` stores for ``event`` (header: previous n, token, extra)."""
    extra, data = encode(event)
    return (b"%d-0" % n, [b"%d\n%s%s" % (previous, token, extra), data])


# -- the entry format ----------------------------------------------------------------------


@given(data=TEXT, event_type=EVENT_TYPES, event_id=IDS, retry=RETRIES, n=st.integers(1, MASK))
def test_entry_decodes_to_the_event_that_was_encoded(
    data: str, event_type: str | None, event_id: str | None, retry: int | None, n: int
) -> None:
    sent = Event(data, event=event_type, id=event_id, retry=retry, channel="c")
    got_n, previous, got = decode("c", "lbl", entry(n, n - 1, sent))
    assert (got_n, previous) == (n, n - 1)
    expected_id = event_id if event_id is not None else f"lbl-{n}"
    expected = Event(data, event=event_type, id=expected_id, retry=retry, channel="c")
    assert (got.data, got.event, got.id, got.retry, got.channel) == (
        data,
        event_type,
        expected_id,
        retry,
        "c",
    )
    assert got.encoded == expected.encoded


@pytest.mark.parametrize(
    "bad",
    [
        (b"5-0", [b"not ours", b"x", b"two", b"fields"]),
        (b"5-0", [b"x\ntok", b"data"]),  # no previous n
        (b"5-0", [b"4\ntok\nq", b"data"]),  # an unknown header line
        (b"5-0", [b"4\ntok\neone\rtwo", b"data"]),  # a line break in the event type
        (b"5-0", [b"4\ntok\nrsoon", b"data"]),  # retry not digits
        (b"5-0", [b"4\ntok", b"\xff"]),  # data not UTF-8
        (b"five-0", [b"4\ntok", b"data"]),
        (b"5-0", None),
    ],
)
def test_entry_that_is_not_ours_raises_malformed_entry(bad: Any) -> None:
    with pytest.raises(MalformedEntry, match="malformed entry in 'c'"):
        decode("c", "lbl", bad)


# -- the epoch and ids ---------------------------------------------------------------------


def test_epoch_ids_round_trip_within_the_epoch_and_are_unknown_outside_it() -> None:
    epoch = Epoch()
    assert epoch.adopt(b"abc123:10", 42) is False  # the first epoch replaces nothing
    key = epoch.parse_id("abc123-17")
    assert key == (1 << SHIFT) + 17
    assert epoch.format_id(key) == "abc123-17"
    assert epoch.latest == (1 << SHIFT) + 42
    for unknown in ("abc123-9", "zzz999-17", "abc123-x", "abc123-", "abc123-١٢"):
        assert epoch.parse_id(unknown) is None  # before its start, other label, not digits
    assert epoch.adopt("abc123:10", 50) is False  # the same epoch: the counter moved on
    assert epoch.latest_n() == 50


def test_a_new_epoch_sorts_after_the_old_one_and_old_keys_keep_their_ids() -> None:
    epoch = Epoch()
    epoch.adopt("old111:0", 5)
    old_key = epoch.parse_id("old111-5")
    assert old_key is not None
    assert epoch.adopt("new222:0", 0) is True  # Redis lost what it had
    assert epoch.parse_id("old111-5") is None
    new_key = epoch.parse_id("new222-1")
    assert new_key is not None
    assert new_key > old_key
    assert epoch.format_id(old_key) == "old111-5"


def test_an_adopted_candidate_label_is_never_proposed_again() -> None:
    epoch = Epoch()
    proposed = epoch.candidate
    epoch.adopt(f"{proposed}:0", 1)
    assert epoch.candidate != proposed
    assert label_of(epoch.current().encode()) == proposed


# -- the read plan -------------------------------------------------------------------------


def no_malformed(error: MalformedEntry) -> None:
    raise AssertionError(f"unexpected: {error}")


def reply(streams: dict[bytes, list[Any]]) -> list[list[Any]]:
    return [[key, entries] for key, entries in streams.items()]


@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=60), st.booleans())
def test_plan_hands_out_a_reply_in_n_order_each_entry_once(
    channels: list[str], as_dict: bool
) -> None:
    keys = Keys(b"p:", "me")
    plan = ReadPlan(keys)
    for name in "abcd":
        plan.watch(name, 0)
    streams: dict[bytes, list[Any]] = {}
    previous: dict[str, int] = {}
    for n, name in enumerate(channels, start=1):
        event = Event(f"{name}{n}", channel=name)
        streams.setdefault(keys.stream(name), []).append(entry(n, previous.get(name, 0), event))
        previous[name] = n
    response: Any = streams if as_dict else reply(streams)  # RESP3 and RESP2 shapes
    batch = plan.take(response, "lbl", no_malformed)
    assert [(n, channel) for n, channel, _ in batch] == list(enumerate(channels, start=1))
    assert all(event is not None and event.data == f"{c}{n}" for n, c, event in batch)
    assert dict(plan.positions()) == {name: previous.get(name, 0) for name in "abcd"}
    assert plan.take(response, "lbl", no_malformed) == []  # read already: nothing again


def test_plan_reports_trimmed_entries_as_a_gap_before_the_next_event() -> None:
    keys = Keys(b"p:", "me")
    plan = ReadPlan(keys)
    plan.watch("a", 3)
    batch = plan.take(reply({keys.stream("a"): [entry(9, 7, Event("x"))]}), "lbl", no_malformed)
    assert [(n, channel, event is None) for n, channel, event in batch] == [
        (7, "a", True),
        (9, "a", False),
    ]


def test_plan_skips_a_malformed_entry_alone_with_a_gap_in_its_place() -> None:
    keys = Keys(b"p:", "me")
    plan = ReadPlan(keys)
    plan.watch("a", 0)
    plan.watch("b", 0)
    heard: list[MalformedEntry] = []
    response = reply(
        {
            keys.stream("a"): [
                entry(1, 0, Event("a1")),
                (b"2-0", [b"foreign", b"x", b"y", b"z"]),
                entry(4, 1, Event("a4")),
            ],
            keys.stream("b"): [entry(3, 0, Event("b3"))],
        }
    )
    batch = plan.take(response, "lbl", heard.append)
    assert [(n, c, e.data if e else None) for n, c, e in batch] == [
        (1, "a", "a1"),
        (2, "a", None),
        (3, "b", "b3"),
        (4, "a", "a4"),
    ]
    assert len(heard) == 1


def test_plan_holds_back_entries_past_a_stream_cut_at_the_read_count() -> None:
    keys = Keys(b"p:", "me")
    plan = ReadPlan(keys)
    plan.watch("a", 0)
    plan.watch("b", 0)
    full = [entry(2 * i + 1, max(0, 2 * i - 1), Event(str(i))) for i in range(1000)]  # n odd
    response = reply({keys.stream("a"): full, keys.stream("b"): [entry(5000, 0, Event("late"))]})
    batch = plan.take(response, "lbl", no_malformed)
    assert batch[-1][0] == 1999  # b's entry waits for the next read, after a's rest
    assert dict(plan.positions()) == {"a": 1999, "b": 0}


def test_plan_follows_a_pattern_s_channels_from_the_registry() -> None:
    keys = Keys(b"p:", "me")
    plan = ReadPlan(keys)
    plan.watch_pattern("room:*", 10)
    assert bool(plan.needs_registry)
    plan.registry_loaded({"room:1", "hall"}, 12, 0)
    assert not plan.needs_registry
    assert dict(plan.positions()) == {"room:1": 10}
    registry = [(b"15-0", [b"c", b"room:2"]), (b"16-0", [b"c", b"lobby"])]
    plan.take(reply({keys.registry: registry}), "lbl", no_malformed)
    assert dict(plan.positions()) == {"room:1": 10, "room:2": 14}  # from its first event
    plan.unwatch_pattern("room:*")
    assert dict(plan.positions()) == {}


def test_plan_restart_reads_every_channel_again_from_the_new_epoch_s_start() -> None:
    plan = ReadPlan(Keys(b"p:", "me"))
    plan.watch("a", 50)
    plan.watch_pattern("x*", 50)
    plan.registry_loaded(set(), 50, 0)
    assert plan.restart(3) == ["a"]
    assert dict(plan.positions()) == {"a": 3}
    assert plan.needs_registry  # the registry is new too
    assert plan.watch("a", 99) == (3, False)


# -- the scripts ---------------------------------------------------------------------------


def test_every_script_loads_from_the_package_with_its_placeholders_filled() -> None:
    scripts = Scripts(Keys(b"p:", "me"), maxlen=77, ttl_ms=0)
    for name in SCRIPT_NAMES:
        assert "redis.call" in load(name)
        lua = getattr(scripts, name).lua.decode()
        assert "@" not in lua
    assert "'COUNT', 1000" in scripts.publish.lua.decode()  # @WINDOW@
    assert "XLEN', KEYS[1]) - 77" in scripts.history.lua.decode()  # @MAXLEN@


def test_script_with_a_missing_or_unknown_value_raises_value_error() -> None:
    with pytest.raises(ValueError, match=re.escape("history.lua takes ['MAXLEN'], not []")):
        Script("history")
    with pytest.raises(ValueError, match=r"sync\.lua takes"):
        Script("sync", MAXLEN=1)
