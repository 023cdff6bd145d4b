"""The PostgreSQL backend's pure parts, without a server: ids and keys, schema names,
what a process delivers. Property tests for the ordering invariants the reader relies on.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_channels.backends.postgres import PostgresBackend, schema_sql
from sse_channels.backends.postgres._ids import MASK, Epoch, position_key, split_key
from sse_channels.backends.postgres._schema import check_schema
from sse_channels.backends.postgres._watch import Watching

positions = st.tuples(st.integers(0, MASK), st.integers(0, MASK))


@given(st.lists(positions, min_size=2, max_size=30))
def test_keys_sort_exactly_as_positions_do(items: list[tuple[int, int]]) -> None:
    assert sorted(items, key=lambda p: position_key(*p)) == sorted(items)
    for txid, row_id in items:
        assert split_key(position_key(txid, row_id)) == (txid, row_id)


@given(positions, st.integers(1, 5))
def test_ids_round_trip_and_a_new_epoch_sorts_after_the_old(
    position: tuple[int, int], epochs: int
) -> None:
    epoch = Epoch()
    keys = []
    for n in range(epochs):
        epoch.adopt(f"label{n}")
        key = epoch.key(*position)
        assert epoch.parse_id(epoch.format_id(key)) == key
        keys.append(key)
    assert keys == sorted(set(keys))
    # An id of an earlier epoch does not parse in the current one.
    if epochs > 1:
        assert epoch.parse_id(f"label0-{position[0]}.{position[1]}") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "label0",
        "label0-",
        "label0-1",
        "label0-1.",
        "label0-.1",
        "label0-1.2.3",
        "label0-\u0663.1",
        "label0-1.-1",
        f"label0-{MASK + 1}.1",
        "other-1.2",
        "label0-1 .2",
    ],
)
def test_ids_that_are_not_ours_do_not_parse(text: str) -> None:
    epoch = Epoch()
    epoch.adopt("label0")
    assert epoch.parse_id(text) is None


def test_first_epoch_is_not_a_loss_but_a_later_one_is() -> None:
    epoch = Epoch()
    assert epoch.adopt("a") is False
    assert epoch.adopt("a") is False
    assert epoch.adopt("b") is True
    assert epoch.latest >= epoch.base


@pytest.mark.parametrize("bad", ["", "Sse", "1abc", "a-b", "a b", "a;drop", "x" * 49, "é"])
def test_schema_names_are_plain_identifiers(bad: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        check_schema(bad)
    with pytest.raises(ValueError, match="schema"):
        schema_sql(bad)
    with pytest.raises(ValueError, match="schema"):
        PostgresBackend("postgresql://localhost/x", schema=bad)


def test_schema_sql_names_every_table_in_the_schema() -> None:
    sql = schema_sql("app_events")
    for table in ("events", "trims", "meta"):
        assert f"CREATE TABLE IF NOT EXISTS app_events.{table}" in sql
    with pytest.raises(TypeError):
        check_schema(3)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("maxlen", 0, ValueError),
        ("maxlen", 1.5, ValueError),
        ("max_age", 0, ValueError),
        ("max_age", float("inf"), ValueError),
        ("poll_interval", 0, ValueError),
        ("trim_interval", -1, ValueError),
        ("retry_for", float("nan"), ValueError),
        ("synchronous_commit", "off", TypeError),
        ("create_schema", 1, TypeError),
        ("application_name", "a b", ValueError),
    ],
)
def test_bad_options_raise_at_the_constructor(option: str, value: object, error: type) -> None:
    with pytest.raises(error, match=option):
        PostgresBackend("postgresql://localhost/x", **{option: value})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dsn"):
        PostgresBackend("")


@given(
    names=st.lists(st.sampled_from(["a", "b", "user:1", "user:2", "room:x"]), max_size=5),
    patterns=st.lists(st.sampled_from(["user:*", "*:x", "*"]), max_size=2),
    channel=st.sampled_from(["a", "b", "user:1", "user:2", "room:x", "other"]),
)
def test_watching_delivers_exactly_the_named_and_matching_channels(
    names: list[str], patterns: list[str], channel: str
) -> None:
    watching = Watching()
    for name in [*names, *patterns]:
        watching.watch(name)
    expected = channel in names or any(
        p == "*"
        or (p == "user:*" and channel.startswith("user:"))
        or (p == "*:x" and channel.endswith(":x"))
        for p in patterns
    )
    assert watching.wants(channel) is expected
    for name in [*names, *patterns]:
        watching.unwatch(name)
    assert watching.wants(channel) is False


def test_watching_counts_growth_for_trimming_and_starts_over() -> None:
    watching = Watching()
    for _ in range(3):
        watching.grew("a")
    watching.grew("b")
    assert watching.to_trim(3) == ["a"]
    assert watching.to_trim(1) == ["b"]
    assert watching.to_trim(1) == []
