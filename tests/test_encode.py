"""format_sse(): the wire format, one rule per test, plus round trips through parse_sse()."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_channels import RESERVED_EVENT_NAMES, Event, format_sse, parse_sse

# --- strategies -----------------------------------------------------------------------------------

#: Any text a Python str can hold, lone surrogates included (and frequent).
ANY_TEXT = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
)
#: Event names format_sse must accept: no CR/LF, no surrogate (codec="utf-8" excludes them).
VALID_EVENTS = st.text(st.characters(codec="utf-8", exclude_characters="\r\n")).filter(
    lambda name: name not in RESERVED_EVENT_NAMES
)
#: Ids format_sse must accept: printable ASCII, no surrounding space ("" resets the last id).
VALID_IDS = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)).map(
    lambda text: text.strip(" ")
)
RETRIES = st.none() | st.integers(min_value=0, max_value=2**63)


def normalised(text: str) -> str:
    """What a browser reads back from data lines: every CRLF and lone CR became LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


class Text(str):
    """A str subclass: format_sse wants exact str for fields."""


# --- data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("a", b"data: a\n\n"),
        ("a\nb", b"data: a\ndata: b\n\n"),
        ("a\r\nb", b"data: a\ndata: b\n\n"),
        ("a\rb", b"data: a\ndata: b\n\n"),
        ("a\n\nb", b"data: a\ndata: \ndata: b\n\n"),
        ("a\r\rb", b"data: a\ndata: \ndata: b\n\n"),
        ("a\n\rb", b"data: a\ndata: \ndata: b\n\n"),
        ("a\r\n\r\nb", b"data: a\ndata: \ndata: b\n\n"),
        ("a\n", b"data: a\ndata: \n\n"),
        ("\r", b"data: \ndata: \n\n"),
        ("\r\n", b"data: \ndata: \n\n"),
    ],
)
def test_format_sse_splits_data_at_crlf_cr_and_lf(data: str, expected: bytes) -> None:
    assert format_sse(data) == expected


@pytest.mark.parametrize(
    "char",
    ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"],
    ids=["LS", "PS", "NEL", "VT", "FF", "FS", "GS", "RS"],
)
def test_format_sse_keeps_unicode_line_breaks_inside_one_data_line(char: str) -> None:
    data = f"a{char}b"
    encoded = format_sse(data)
    assert encoded == b"data: " + data.encode() + b"\n\n"
    assert parse_sse(encoded) == [Event(data)]


@pytest.mark.parametrize(
    "char",
    ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"],
    ids=["LS", "PS", "NEL", "VT", "FF", "FS", "GS", "RS"],
)
def test_format_sse_keeps_unicode_line_breaks_in_multiline_data(char: str) -> None:
    data = f"a{char}b\nc{char}"
    assert format_sse(data) == f"data: a{char}b\ndata: c{char}\n\n".encode()


@pytest.mark.parametrize("data", [" a", "  a", " ", "a\n b", "\t a"])
def test_format_sse_keeps_leading_spaces_of_data(data: str) -> None:
    encoded = format_sse(data)
    assert all(line.startswith(b"data: ") for line in encoded.splitlines() if line)
    assert parse_sse(encoded) == [Event(data)]


def test_format_sse_empty_string_writes_one_empty_data_line() -> None:
    assert format_sse("") == b"data: \n\n"
    assert parse_sse(format_sse("")) == [Event("")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"a": 1, "b": [1, 2]}, b'data: {"a":1,"b":[1,2]}\n\n'),
        ({"name": "Zoë ✓"}, 'data: {"name":"Zoë ✓"}\n\n'.encode()),
        ([None, True, 1.5], b"data: [null,true,1.5]\n\n"),
        (42, b"data: 42\n\n"),
        (False, b"data: false\n\n"),
        ({"text": "a\nb"}, b'data: {"text":"a\\nb"}\n\n'),
    ],
)
def test_format_sse_serialises_non_str_data_as_compact_json(data: Any, expected: bytes) -> None:
    assert format_sse(data) == expected


@pytest.mark.parametrize("data", [float("nan"), float("inf"), float("-inf"), {"x": [float("nan")]}])
def test_format_sse_rejects_nan_and_infinity(data: Any) -> None:
    with pytest.raises(TypeError, match="float"):
        format_sse(data)


@pytest.mark.parametrize(
    "data",
    [object(), b"bytes", {1, 2}, {(1, 2): "tuple key"}, complex(1, 2)],
    ids=["object", "bytes", "set", "tuple-key", "complex"],
)
def test_format_sse_rejects_unserialisable_data_with_type_error(data: Any) -> None:
    with pytest.raises(TypeError, match="cannot serialise"):
        format_sse(data)


def test_unserialisable_data_error_names_the_serializer_option() -> None:
    def failing(value: object) -> str:
        raise RuntimeError("cannot")

    with pytest.raises(TypeError, match=r"pass a str, or a serializer="):
        format_sse(object())
    with pytest.raises(TypeError, match=r"the serializer= given failed"):
        format_sse(object(), serializer=failing)


def test_format_sse_rejects_circular_data_with_type_error() -> None:
    data: list[object] = []
    data.append(data)
    with pytest.raises(TypeError, match="cannot serialise"):
        format_sse(data)


def test_format_sse_uses_a_serializer_returning_bytes() -> None:
    def dumps(value: Any) -> bytes:  # the shape of orjson.dumps
        return json.dumps(value, separators=(", ", ": ")).encode()

    assert format_sse({"a": 1}, serializer=dumps) == b'data: {"a": 1}\n\n'


def test_format_sse_uses_a_serializer_returning_str() -> None:
    assert format_sse([1], serializer=lambda value: f"<{value}>") == b"data: <[1]>\n\n"


def test_format_sse_splits_serializer_output_at_line_breaks() -> None:
    encoded = format_sse({"a": 1}, serializer=lambda value: b'{\r\n  "a": 1\r\n}')
    assert encoded == b'data: {\ndata:   "a": 1\ndata: }\n\n'


def test_format_sse_sends_str_data_unserialised_even_with_a_serializer() -> None:
    assert format_sse("x", serializer=lambda value: b"never") == b"data: x\n\n"


@pytest.mark.parametrize(
    ("serializer", "message"),
    [
        (lambda value: 1 / 0, "cannot serialise"),
        (lambda value: 42, "must return str or bytes"),
        (lambda value: bytearray(b"x"), "must return str or bytes"),
        (lambda value: b"\xff", "not UTF-8"),
    ],
    ids=["raises", "returns-int", "returns-bytearray", "returns-bad-utf8"],
)
def test_format_sse_turns_serializer_failures_into_type_error(
    serializer: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        format_sse({"a": 1}, serializer=serializer)


# --- event ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["update", "message", "", "with space", "ünïcode", "a:b"])
def test_format_sse_writes_the_event_line(event: str) -> None:
    assert format_sse("x", event=event) == f"event: {event}\ndata: x\n\n".encode()


@pytest.mark.parametrize("event", ["a\nb", "a\rb", "a\r\nb", "\n", "update\n"])
def test_format_sse_rejects_cr_or_lf_in_event(event: str) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        format_sse("x", event=event)


@pytest.mark.parametrize("event", sorted(RESERVED_EVENT_NAMES))
def test_format_sse_rejects_reserved_event_names(event: str) -> None:
    with pytest.raises(ValueError, match="collides"):
        format_sse("x", event=event)


def test_reserved_event_names_are_error_and_open() -> None:
    assert frozenset({"error", "open"}) == RESERVED_EVENT_NAMES


def test_format_sse_allows_the_message_event_name() -> None:
    assert parse_sse(format_sse("x", event="message")) == [Event("x", event="message")]


@pytest.mark.parametrize(
    "event", [1, b"update", ["update"], Text("update")], ids=["int", "bytes", "list", "str-sub"]
)
def test_format_sse_rejects_non_str_event_with_type_error(event: Any) -> None:
    with pytest.raises(TypeError):
        format_sse("x", event=event)


def test_format_sse_rejects_str_subclass_event_even_when_its_name_is_cached() -> None:
    # Regression: the event-line cache was looked up before the type check, so a str
    # subclass equal to an already-used name got through once that name was cached.
    format_sse("x", event="cached-name")
    with pytest.raises(TypeError, match="event must be str"):
        format_sse("x", event=Text("cached-name"))


def test_format_sse_rejects_reserved_event_names_every_time() -> None:
    for _ in range(3):  # a rejected name must never reach the event-line cache
        with pytest.raises(ValueError, match="collides"):
            format_sse("x", event="error")


# --- id -------------------------------------------------------------------------------------------


def test_format_sse_writes_no_id_line_for_id_none() -> None:
    assert format_sse("x", id=None) == b"data: x\n\n"


def test_format_sse_writes_an_empty_id_line_for_empty_id() -> None:
    assert format_sse("x", id="") == b"id: \ndata: x\n\n"
    assert format_sse(id="") == b"id: \n\n"


@pytest.mark.parametrize("id", ["1", "a b", "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./", "0" * 1000])
def test_format_sse_writes_printable_ascii_ids(id: str) -> None:
    assert format_sse("x", id=id) == f"id: {id}\ndata: x\n\n".encode()


@pytest.mark.parametrize(
    ("id", "message"),
    [
        ("a\nb", "CR or LF"),
        ("a\rb", "CR or LF"),
        ("1\r\n", "CR or LF"),
        ("a\0b", "NUL"),
        ("\0", "NUL"),
        ("é", "ASCII"),
        ("a\u2028b", "ASCII"),
        ("\ud800", "ASCII"),
        ("a\tb", "control"),
        ("\t1", "control"),
        ("1\x7f", "control"),
        ("\x1b[0m", "control"),
        (" 1", "space"),
        ("1 ", "space"),
        (" ", "space"),
    ],
)
def test_format_sse_rejects_ids_that_cannot_survive_last_event_id(id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_sse("x", id=id)


@pytest.mark.parametrize(
    "id", [1, b"1", 1.5, Text("1"), ["1"]], ids=["int", "bytes", "float", "str-sub", "list"]
)
def test_format_sse_rejects_non_str_id_with_type_error(id: Any) -> None:
    with pytest.raises(TypeError, match="id must be str"):
        format_sse("x", id=id)


# --- retry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry", [0, 1, 3000, 2**64])
def test_format_sse_writes_the_retry_line(retry: int) -> None:
    assert format_sse(retry=retry) == f"retry: {retry}\n\n".encode()


@pytest.mark.parametrize("retry", [True, False, 1.0, 1.5, "5", [5]], ids=repr)
def test_format_sse_rejects_non_int_retry_with_type_error(retry: Any) -> None:
    with pytest.raises(TypeError, match="retry must be an int"):
        format_sse("x", retry=retry)


@pytest.mark.parametrize("retry", [-1, -3000])
def test_format_sse_rejects_negative_retry(retry: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        format_sse("x", retry=retry)


# --- comment --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("hi", b": hi\n\n"),
        ("", b": \n\n"),
        ("a\nb", b": a\n: b\n\n"),
        ("a\r\nb", b": a\n: b\n\n"),
        ("a\rb", b": a\n: b\n\n"),
        ("a\u2028b\x85c", ": a\u2028b\x85c\n\n".encode()),
    ],
)
def test_format_sse_writes_one_comment_line_per_piece(comment: str, expected: bytes) -> None:
    assert format_sse(comment=comment) == expected


@pytest.mark.parametrize("comment", ["hi", "", "a\nb", "a\rdata: forged", "\r\n\r\n"])
def test_format_sse_comment_alone_never_dispatches(comment: str) -> None:
    assert parse_sse(format_sse(comment=comment)) == []


def test_format_sse_comment_cannot_forge_a_field() -> None:
    encoded = format_sse(comment="x\ndata: forged\r\rdata: again")
    assert parse_sse(encoded + encoded) == []


def test_format_sse_writes_comment_before_the_event_fields() -> None:
    encoded = format_sse("x", comment="c", event="e", id="1", retry=5)
    assert encoded == b": c\nevent: e\nid: 1\nretry: 5\ndata: x\n\n"
    assert parse_sse(encoded) == [Event("x", event="e", id="1", retry=5)]


@pytest.mark.parametrize("comment", [1, b"hi", Text("hi")], ids=["int", "bytes", "str-sub"])
def test_format_sse_rejects_non_str_comment_with_type_error(comment: Any) -> None:
    with pytest.raises(TypeError, match="comment must be str"):
        format_sse(comment=comment)


# --- lone surrogates, empty calls -----------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"data": "\ud800"},
        {"data": "a\udfffb"},
        {"data": "ok\n\udc80"},
        {"data": {"key": "\ud800"}},
        {"data": ["\udfff"]},
        {"comment": "\ud800"},
        {"comment": "ok\r\ud800"},
        {"data": "x", "event": "\ud800"},
        {"data": "x", "event": "up\udc00date"},
    ],
    ids=repr,
)
def test_format_sse_rejects_lone_surrogates_with_value_error(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        format_sse(**fields)


@pytest.mark.parametrize(
    "fields",
    [{}, {"data": None}, {"serializer": json.dumps}, {"data": None, "event": None, "id": None}],
    ids=repr,
)
def test_format_sse_rejects_a_call_without_any_field(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        format_sse(**fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"event": "e"}, b"event: e\n\n"),
        ({"id": "1"}, b"id: 1\n\n"),
        ({"retry": 0}, b"retry: 0\n\n"),
        ({"comment": ""}, b": \n\n"),
    ],
    ids=repr,
)
def test_format_sse_accepts_any_single_field(fields: dict[str, Any], expected: bytes) -> None:
    assert format_sse(**fields) == expected


# --- properties -----------------------------------------------------------------------------------


@given(data=st.text(), event=st.none() | VALID_EVENTS, id=st.none() | VALID_IDS)
def test_format_sse_round_trips_any_text_through_the_decoder(
    data: str, event: str | None, id: str | None
) -> None:
    events = parse_sse(format_sse(data, event=event, id=id))
    assert events == [Event(normalised(data), event=event or None, id=id or None)]


@given(data=ANY_TEXT)
def test_format_sse_raises_value_error_exactly_for_text_with_lone_surrogates(data: str) -> None:
    if any(is_surrogate(char) for char in data):
        with pytest.raises(ValueError, match="surrogate"):
            format_sse(data)
        with pytest.raises(ValueError, match="surrogate"):
            format_sse(comment=data)
    else:
        assert parse_sse(format_sse(data)) == [Event(normalised(data))]
        assert parse_sse(format_sse(comment=data)) == []


@given(
    data=st.text(),
    event=st.none() | VALID_EVENTS,
    id=st.none() | VALID_IDS,
    retry=RETRIES,
    comment=st.none() | st.text(),
)
def test_format_sse_never_raises_for_valid_fields(
    data: str, event: str | None, id: str | None, retry: int | None, comment: str | None
) -> None:
    encoded = format_sse(data, event=event, id=id, retry=retry, comment=comment)
    assert encoded.endswith(b"\n\n")
    assert parse_sse(encoded) == [
        Event(normalised(data), event=event or None, id=id or None, retry=retry)
    ]


@given(id=ANY_TEXT)
def test_format_sse_accepts_exactly_the_printable_ascii_ids(id: str) -> None:
    valid = all(" " <= char <= "~" for char in id) and id == id.strip(" ")
    try:
        encoded = format_sse("x", id=id)
    except ValueError:
        assert not valid
    else:
        assert valid
        assert parse_sse(encoded) == [Event("x", id=id or None)]


@given(event=ANY_TEXT)
def test_format_sse_accepts_exactly_the_safe_event_names(event: str) -> None:
    valid = (
        "\r" not in event
        and "\n" not in event
        and not any(is_surrogate(char) for char in event)
        and event not in RESERVED_EVENT_NAMES
    )
    try:
        encoded = format_sse("x", event=event)
    except ValueError:
        assert not valid
    else:
        assert valid
        assert parse_sse(encoded) == [Event("x", event=event or None)]


JUNK = st.one_of(
    st.integers(),
    st.floats(),
    st.binary(),
    st.booleans(),
    st.lists(st.text(), max_size=2),
    st.tuples(st.text()),
    st.dictionaries(st.text(), st.integers(), max_size=2),
)


@given(junk=JUNK)
def test_format_sse_rejects_non_str_ids_and_events_with_type_error(junk: Any) -> None:
    with pytest.raises(TypeError):
        format_sse("x", id=junk)
    with pytest.raises(TypeError):
        format_sse("x", event=junk)
    with pytest.raises(TypeError):
        format_sse(comment=junk)


#: (kind, text, event, id, retry): "event" blocks dispatch; "comment" and "id-only" never do.
Block = tuple[str, str, str | None, str | None, int | None]
BLOCKS = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.text(), st.none() | VALID_EVENTS, VALID_IDS, RETRIES),
        st.tuples(st.just("event"), st.text(), st.none() | VALID_EVENTS, st.none(), RETRIES),
        st.tuples(st.just("comment"), st.text(), st.none(), st.none(), st.none()),
        st.tuples(st.just("id-only"), st.just(""), st.none(), VALID_IDS, st.none()),
    ),
    max_size=12,
)


@settings(max_examples=200)
@given(blocks=BLOCKS)
def test_format_sse_concatenated_blocks_decode_to_the_same_events(blocks: list[Block]) -> None:
    stream = b""
    expected: list[Event] = []
    last_id = ""  # the browser's last event id: an event without an id line inherits it
    for kind, text, event, id, retry in blocks:
        if kind == "comment":
            stream += format_sse(comment=text)
            continue
        if id is not None:
            last_id = id
        if kind == "id-only":
            stream += format_sse(id=id)
            continue
        stream += format_sse(text, event=event, id=id, retry=retry)
        expected.append(
            Event(normalised(text), event=event or None, id=last_id or None, retry=retry)
        )
    assert parse_sse(stream) == expected


def test_format_sse_sends_a_str_subclass_as_text_not_json() -> None:
    class Status(str, enum.Enum):
        ONLINE = "online"

    assert format_sse(Status.ONLINE) == b"data: online\n\n"
