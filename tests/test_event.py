"""Event: an immutable, validated value that encodes itself once."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sse_channels._event
from sse_channels import RESERVED_EVENT_NAMES, Event, format_sse, parse_sse


class Text(str):
    """A str subclass, as a serializer might return (e.g. markupsafe.Markup)."""


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"data": "x"},
        {"data": ""},
        {"data": "a\nb\r\nc\rd"},
        {"data": "x", "event": "update"},
        {"data": "x", "id": "42"},
        {"data": "x", "id": ""},
        {"data": "x", "retry": 3000},
        {"data": "x", "event": "e", "id": "1", "retry": 0},
        {"data": " leading space", "event": "message"},
        {"data": "a\u2028b"},
    ],
    ids=repr,
)
def test_event_encoded_is_format_sse_of_its_fields(fields: dict[str, Any]) -> None:
    event = Event(**fields)
    others = {name: value for name, value in fields.items() if name != "data"}
    assert event.encoded == format_sse(fields.get("data", ""), **others)


def test_event_defaults_to_empty_data_that_still_dispatches() -> None:
    event = Event()
    assert (event.data, event.event, event.id, event.retry, event.channel) == (
        "",
        None,
        None,
        None,
        None,
    )
    assert event.encoded == b"data: \n\n"
    assert parse_sse(event.encoded) == [event]


def test_event_leaves_the_channel_out_of_the_wire_format() -> None:
    assert Event("x", channel="news").encoded == format_sse("x")


@pytest.mark.parametrize(
    ("data", "text"),
    [({"a": 1, "b": [True, None]}, '{"a":1,"b":[true,null]}'), (7, "7"), (["é"], '["é"]')],
)
def test_event_serialises_non_str_data_as_compact_json(data: Any, text: str) -> None:
    event = Event(data)
    assert event.data == text
    assert event.encoded == format_sse(data)


def test_event_uses_a_serializer_returning_bytes() -> None:
    def dumps(value: Any) -> bytes:  # the shape of orjson.dumps
        return json.dumps(value).encode()

    event = Event({"a": 1}, serializer=dumps)
    assert event.data == '{"a": 1}'
    assert event.encoded == format_sse({"a": 1}, serializer=dumps) == b'data: {"a": 1}\n\n'


def test_event_encodes_what_a_serializer_returning_a_str_subclass_gave() -> None:
    # Regression: Event passed the subclass on to format_sse, which JSON-encoded it again.
    def dumps(value: Any) -> str:
        return Text(json.dumps(value))

    event = Event({"a": 1}, serializer=dumps)
    assert event.encoded == format_sse({"a": 1}, serializer=dumps) == b'data: {"a": 1}\n\n'
    assert type(event.data) is str


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"event": "error"}, ValueError),
        ({"event": "open"}, ValueError),
        ({"event": "a\nb"}, ValueError),
        ({"event": 1}, TypeError),
        ({"id": "a\rb"}, ValueError),
        ({"id": "a\0b"}, ValueError),
        ({"id": " 1"}, ValueError),
        ({"id": "é"}, ValueError),
        ({"id": 1}, TypeError),
        ({"retry": -1}, ValueError),
        ({"retry": True}, TypeError),
        ({"retry": 1.0}, TypeError),
        ({"data": "\ud800"}, ValueError),
        ({"data": float("nan")}, TypeError),
        ({"data": object()}, TypeError),
        ({"data": {"a": 1}, "serializer": lambda value: 1}, TypeError),
    ],
    ids=repr,
)
def test_event_rejects_bad_fields_when_made(fields: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Event(**fields)


def test_event_encodes_once_when_made(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def counting_format_sse(*args: Any, **kwargs: Any) -> bytes:
        calls.append(args)
        return format_sse(*args, **kwargs)

    monkeypatch.setattr(sse_channels._event, "format_sse", counting_format_sse)
    event = Event("x", event="e", id="1")
    assert len(calls) == 1
    first = event.encoded
    assert event.encoded is first
    assert event.encoded is first
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("data", "y"), ("event", "e"), ("id", "1"), ("retry", 5), ("channel", "c"), ("encoded", b"")],
)
def test_event_is_immutable(name: str, value: object) -> None:
    event = Event("x")
    with pytest.raises(AttributeError, match="immutable"):
        setattr(event, name, value)
    with pytest.raises(AttributeError, match="immutable"):
        delattr(event, name)
    assert event == Event("x")
    assert event.encoded == b"data: x\n\n"


def test_event_rejects_new_attributes() -> None:
    with pytest.raises(AttributeError):
        Event("x").extra = 1


def test_event_replace_returns_a_new_validated_event() -> None:
    event = Event("x", event="e", id="1", retry=5, channel="c")
    changed = event.replace(data="y", id="2")
    assert changed == Event("y", event="e", id="2", retry=5, channel="c")
    assert changed.encoded == format_sse("y", event="e", id="2", retry=5)
    assert event == Event("x", event="e", id="1", retry=5, channel="c")
    assert event.encoded == format_sse("x", event="e", id="1", retry=5)


def test_event_replace_can_clear_a_field() -> None:
    assert Event("x", id="1").replace(id=None).encoded == b"data: x\n\n"


def test_event_replace_serialises_new_non_str_data() -> None:
    assert Event("x").replace(data={"a": 1}).data == '{"a":1}'


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"event": "open"}, ValueError),
        ({"id": "a\nb"}, ValueError),
        ({"retry": False}, TypeError),
        ({"bogus": 1}, TypeError),
    ],
    ids=repr,
)
def test_event_replace_rejects_bad_changes(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Event("x").replace(**changes)


def test_event_equal_fields_make_equal_events_with_equal_hashes() -> None:
    first = Event("x", event="e", id="1", retry=5, channel="c")
    second = Event("x", event="e", id="1", retry=5, channel="c")
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1


@pytest.mark.parametrize(
    "changes",
    [{"data": "y"}, {"event": "f"}, {"id": "2"}, {"id": ""}, {"retry": 6}, {"channel": "d"}],
    ids=repr,
)
def test_event_differs_when_any_field_differs(changes: dict[str, Any]) -> None:
    event = Event("x", event="e", id="1", retry=5, channel="c")
    assert event != event.replace(**changes)


def test_event_differs_from_its_id_set_to_none_or_empty() -> None:
    assert Event("x", id="") != Event("x")


def test_event_is_not_equal_to_other_types() -> None:
    event = Event("x")
    assert event != "x"
    assert event != b"data: x\n\n"
    assert event.__eq__("x") is NotImplemented


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_event_survives_a_pickle_round_trip(protocol: int) -> None:
    event = Event({"a": [1, "é"]}, event="e", id="1", retry=5, channel="c")
    restored = pickle.loads(pickle.dumps(event, protocol=protocol))
    assert type(restored) is Event
    assert restored == event
    assert restored.encoded == event.encoded
    assert (restored.data, restored.event, restored.id, restored.retry, restored.channel) == (
        event.data,
        event.event,
        event.id,
        event.retry,
        event.channel,
    )
    with pytest.raises(AttributeError):
        restored.data = "changed"


def test_event_pickles_by_its_public_name() -> None:
    assert b"sse_channels._event" not in pickle.dumps(Event("x"))


def test_decoded_event_survives_a_pickle_round_trip() -> None:
    [event] = parse_sse(b"event: e\nid: 1\ndata: a\ndata: b\n\n")
    restored = pickle.loads(pickle.dumps(event))
    assert restored == event
    assert restored.encoded == event.encoded


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy])
def test_event_copies_are_equal(clone: Any) -> None:
    event = Event("x", event="e", id="1", retry=5, channel="c")
    assert clone(event) == event
    assert clone(event).encoded == event.encoded


def test_event_repr_shows_the_fields_that_are_set() -> None:
    assert repr(Event("x")) == "Event(data='x')"
    assert repr(Event("x", event="e", id="", retry=0, channel="c")) == (
        "Event(data='x', event='e', id='', retry=0, channel='c')"
    )


@given(
    data=st.text(),
    event=st.none()
    | st.text(st.characters(codec="utf-8", exclude_characters="\r\n")).filter(
        lambda name: name not in RESERVED_EVENT_NAMES
    ),
    id=st.none() | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)).map(str.strip),
    retry=st.none() | st.integers(min_value=0),
    channel=st.none() | st.text(),
)
def test_event_of_any_valid_fields_encodes_and_pickles_consistently(
    data: str, event: str | None, id: str | None, retry: int | None, channel: str | None
) -> None:
    made = Event(data, event=event, id=id, retry=retry, channel=channel)
    assert made.encoded == format_sse(data, event=event, id=id, retry=retry)
    restored = pickle.loads(pickle.dumps(made))
    assert restored == made
    assert hash(restored) == hash(made)
    assert restored.encoded == made.encoded


def test_event_with_id_puts_a_checked_id_line_first_and_keeps_the_rest() -> None:
    draft = Event({"a": 1}, event="e", retry=5, channel="news")
    published = draft.with_id("x-7")
    assert published.id == "x-7"
    assert published.encoded == b"id: x-7\n" + draft.encoded
    assert parse_sse(published.encoded)[0].id == "x-7"
    assert (published.data, published.event, published.retry, published.channel) == (
        draft.data,
        draft.event,
        draft.retry,
        draft.channel,
    )


@pytest.mark.parametrize("bad", ["a\nb", " x", "x\0", "\u00e9"])
def test_event_with_id_refuses_an_id_that_cannot_survive_the_header(bad: str) -> None:
    with pytest.raises(ValueError):
        Event("x").with_id(bad)


def test_event_with_id_refuses_an_event_that_already_has_one() -> None:
    with pytest.raises(ValueError, match="already has the id"):
        Event("x", id="1").with_id("2")
