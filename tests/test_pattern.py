from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_channels._pattern import compile_pattern, is_pattern


def reference(pattern: str, name: str) -> bool:
    """The meaning of a pattern: ``*`` is any run of characters, everything else literal."""
    regex = ".*".join(map(re.escape, pattern.split("*")))
    return re.fullmatch(regex, name, re.DOTALL) is not None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("user:*", True), ("*", True), ("a*b*c", True), ("user:1", False), ("", False)],
)
def test_is_pattern_means_a_star_in_the_name(name: str, expected: bool) -> None:
    assert is_pattern(name) is expected


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("user:1", "user:1", True),
        ("user:1", "user:10", False),
        ("user:*", "user:1", True),
        ("user:*", "user:", True),
        ("user:*", "users:1", False),
        ("*", "", True),
        ("*", "anything at all", True),
        ("*:presence", "user:7:presence", True),
        ("*:presence", "user:7:presences", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "a-b-b-c", True),
        ("a*b*c", "acb", False),
        ("ab*ba", "aba", False),  # head and tail must not overlap
        ("ab*ba", "abba", True),
        ("a**b", "ab", True),
        ("*x*x*", "x", False),
        ("*x*x*", "xx", True),
        ("room.*", "roomX1", False),  # "." is literal, not a regex wildcard
        ("room[1]*", "room[1]a", True),
        ("?*", "a", False),  # "?" is literal, unlike fnmatch
    ],
)
def test_compile_pattern_matches_table(pattern: str, name: str, expected: bool) -> None:
    assert compile_pattern(pattern)(name) is expected
    assert reference(pattern, name) is expected


@given(
    pattern=st.text(alphabet="ab:*", max_size=8),
    name=st.text(alphabet="ab:", max_size=12),
)
def test_compile_pattern_agrees_with_the_regex_reference(pattern: str, name: str) -> None:
    assert compile_pattern(pattern)(name) is reference(pattern, name)


@given(
    pattern=st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
    name=st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)
def test_compile_pattern_agrees_with_the_reference_on_any_text(pattern: str, name: str) -> None:
    assert compile_pattern(pattern)(name) is reference(pattern, name)


@given(name=st.text(alphabet="ab:", max_size=12), data=st.data())
def test_compile_pattern_matches_every_name_its_stars_can_cover(
    name: str, data: st.DataObject
) -> None:
    # Replace arbitrary slices of a name with stars: the resulting pattern must match it.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(name)), max_size=6)))
    pieces, previous = [], 0
    for start, stop in zip(cuts[::2], cuts[1::2], strict=False):
        pieces.append(name[previous:start])
        previous = stop
    pieces.append(name[previous:])
    assert compile_pattern("*".join(pieces))(name)


def test_compile_pattern_without_star_is_plain_equality() -> None:
    match = compile_pattern("user:1")
    assert match("user:1")
    assert not match("user:1 ")


def test_compile_pattern_takes_linear_time_where_backtracking_explodes() -> None:
    # A backtracking matcher tries every way to split the a's between the stars before it
    # gives up on the missing "c": exponential in the number of stars.
    pattern = "*" + "a*" * 30 + "c*x"
    name = "a" * 20_000 + "x"
    match = compile_pattern(pattern)
    started = time.perf_counter()
    for _ in range(100):
        assert not match(name)
    assert time.perf_counter() - started < 1.0
