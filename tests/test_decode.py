"""SSEDecoder and parse_sse(): WHATWG "Interpreting an event stream", rule by rule."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_channels import RESERVED_EVENT_NAMES, Event, SSEDecoder, format_sse, parse_sse

if TYPE_CHECKING:
    from collections.abc import Sequence

BOM = "\ufeff"
UTF8_BOM = BOM.encode()


def feed_all(chunks: Sequence[bytes | str]) -> tuple[SSEDecoder, list[Event]]:
    """Feed the chunks one by one to a fresh decoder; return it and every event it gave."""
    decoder = SSEDecoder()
    events: list[Event] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return decoder, events


def state(decoder: SSEDecoder) -> tuple[str, int | None, list[str]]:
    return decoder.last_event_id, decoder.retry, decoder.comments


# --- the examples of the HTML standard, section "Server-sent events" ------------------------------


def test_parse_sse_spec_example_stock_ticker_joins_data_lines() -> None:
    assert parse_sse("data: YHOO\ndata: +2\ndata: 10\n\n") == [Event("YHOO\n+2\n10")]


def test_parse_sse_spec_example_first_second_third_tracks_the_last_event_id() -> None:
    stream = (
        ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n"
    )
    decoder, events = feed_all([stream])
    # The last block is not followed by a blank line: the end of the stream does not dispatch.
    assert events == [Event("first event", id="1"), Event("second event")]
    assert decoder.comments == [" test stream"]
    assert decoder.last_event_id == ""
    assert decoder.feed("\n") == [Event(" third event")]


def test_parse_sse_spec_example_data_without_colon_and_an_unterminated_block() -> None:
    assert parse_sse("data\n\ndata\ndata\n\ndata:") == [Event(""), Event("\n")]


def test_parse_sse_spec_example_space_after_colon_is_optional() -> None:
    assert parse_sse("data:test\n\ndata: test\n\n") == [Event("test"), Event("test")]


def test_parse_sse_spec_example_three_messages() -> None:
    stream = (
        "data: This is the first message.\n\n"
        "data: This is the second message, it\n"
        "data: has two lines.\n\n"
        "data: This is the third message.\n\n"
    )
    assert parse_sse(stream) == [
        Event("This is the first message."),
        Event("This is the second message, it\nhas two lines."),
        Event("This is the third message."),
    ]


def test_parse_sse_spec_example_event_types() -> None:
    stream = (
        "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    )
    assert parse_sse(stream) == [
        Event("73857293", event="add"),
        Event("2153", event="remove"),
        Event("113411", event="add"),
    ]


# --- byte order mark ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [UTF8_BOM + b"data: a\n\n", BOM + "data: a\n\n"], ids=repr)
def test_parse_sse_strips_a_leading_bom(stream: bytes | str) -> None:
    assert parse_sse(stream) == [Event("a")]


def test_parse_sse_strips_only_one_bom() -> None:
    # The second BOM belongs to the first line, whose field is then "\ufeffdata": unknown.
    assert parse_sse(BOM + BOM + "data: a\n\ndata: b\n\n") == [Event("b")]
    assert parse_sse(UTF8_BOM * 2 + b"data: a\n\n") == []


def test_parse_sse_keeps_a_bom_inside_data() -> None:
    assert parse_sse(BOM + "data: " + BOM + "a\n\n") == [Event(BOM + "a")]


def test_sse_decoder_strips_a_bom_split_across_chunks() -> None:
    chunks = [b"", UTF8_BOM[:1], UTF8_BOM[1:2], UTF8_BOM[2:] + b"data: a\n\n"]
    assert feed_all(chunks)[1] == [Event("a")]


def test_sse_decoder_keeps_a_bom_at_the_start_of_a_later_chunk() -> None:
    _, events = feed_all([BOM + "data: a\n\n", BOM + "data: b\n\n"])
    assert events == [Event("a")]
    _, events = feed_all([b"data: a\n\n", UTF8_BOM + b"data: b\n\n"])
    assert events == [Event("a")]


# --- line ends ------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\n", "\r", "\r\n"], ids=["LF", "CR", "CRLF"])
def test_parse_sse_ends_lines_at_lf_cr_and_crlf(end: str) -> None:
    stream = f"id: 1{end}data: a{end}data: b{end}{end}data: c{end}{end}"
    assert parse_sse(stream) == [Event("a\nb", id="1"), Event("c", id="1")]
    assert parse_sse(stream.encode()) == [Event("a\nb", id="1"), Event("c", id="1")]


def test_parse_sse_accepts_mixed_line_ends() -> None:
    assert parse_sse("data: a\rdata: b\r\ndata: c\n\r\n") == [Event("a\nb\nc")]


def test_parse_sse_counts_lf_then_cr_as_two_line_ends() -> None:
    assert parse_sse("data: a\n\rdata: b\n\n") == [Event("a"), Event("b")]


@pytest.mark.parametrize(
    "char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
)
def test_parse_sse_does_not_end_lines_at_unicode_line_breaks(char: str) -> None:
    assert parse_sse(f"data: a{char}data: b\n\n") == [Event(f"a{char}data: b")]


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_sse_decoder_counts_a_crlf_split_across_feeds_as_one_line_end(as_bytes: bool) -> None:
    chunks = ["data: a\r", "\ndata: b\r", "\n\r", "\n"]
    decoder = SSEDecoder()
    events: list[Event] = []
    for chunk in chunks:
        events += decoder.feed(chunk.encode() if as_bytes else chunk)
    assert events == [Event("a\nb")]


def test_sse_decoder_remembers_a_trailing_cr_across_empty_feeds() -> None:
    _, events = feed_all([b"data: a\r", b"", "", b"\ndata: b\n\n"])
    assert events == [Event("a\nb")]


def test_sse_decoder_ends_the_line_at_a_trailing_cr_before_the_next_feed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: a\r") == []
    assert decoder.feed("\r") == [Event("a")]
    assert decoder.feed("data: b\r") == []
    assert decoder.feed("\r\n") == [Event("b")]
    assert decoder.feed("data: c\r") == []
    assert decoder.feed("data: d\n\n") == [Event("c\nd")]


# --- text decoding --------------------------------------------------------------------------------


def test_sse_decoder_joins_a_multibyte_character_split_across_feeds() -> None:
    stream = "data: é€😀\n\n".encode()
    assert feed_all([stream[i : i + 1] for i in range(len(stream))])[1] == [Event("é€😀")]


@pytest.mark.parametrize(
    ("raw", "data"),
    [
        (b"\xff", "\ufffd"),
        (b"a\xc3", "a\ufffd"),
        (b"\xe2\x82x", "\ufffdx"),
        (b"\xc0\xaf", "\ufffd\ufffd"),
        (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),
        (b"\xf0\x9f\x98\x80", "😀"),
    ],
    ids=["ff", "truncated-2", "truncated-3", "overlong", "surrogate", "valid-4"],
)
def test_parse_sse_replaces_invalid_utf8_with_u_fffd(raw: bytes, data: str) -> None:
    assert parse_sse(b"data: " + raw + b"\n\n") == [Event(data)]


def test_sse_decoder_replaces_invalid_utf8_split_across_feeds() -> None:
    assert feed_all([b"data: \xe2", b"\x82", b"x\n\n"])[1] == [Event("\ufffdx")]


# --- fields ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "data"),
    [
        ("data", ""),
        ("data:", ""),
        ("data: ", ""),
        ("data:x", "x"),
        ("data: x", "x"),
        ("data:  x", " x"),
        ("data: x ", "x "),
        ("data:\tx", "\tx"),
        ("data: a: b", "a: b"),
    ],
)
def test_parse_sse_removes_exactly_one_space_after_the_colon(line: str, data: str) -> None:
    assert parse_sse(f"{line}\n\n") == [Event(data)]


@pytest.mark.parametrize(
    "stream",
    [
        "foo: bar\n\n",
        "Data: x\n\n",
        "DATA: x\n\n",
        "data : x\n\n",
        " data: x\n\n",
        "event: e\n\n",
        "retry: 5\n\n",
        "id: 1\n\n",
        ": data: x\n\n",
    ],
)
def test_parse_sse_dispatches_nothing_without_a_data_field(stream: str) -> None:
    assert parse_sse(stream) == []


def test_parse_sse_ignores_unknown_fields_next_to_data() -> None:
    stream = "foo: bar\nDATA: no\ndata: x\nEvent: no\nid : no\n\n"
    assert parse_sse(stream) == [Event("x")]


def test_parse_sse_event_type_defaults_to_none_for_message() -> None:
    assert parse_sse("data: x\n\n")[0].event is None
    assert parse_sse("event:\ndata: x\n\n")[0].event is None
    assert parse_sse("event: message\ndata: x\n\n")[0].event == "message"


def test_parse_sse_event_type_is_reset_after_each_block() -> None:
    assert parse_sse("event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\n") == [
        Event("1", event="a"),
        Event("2"),
        Event("3"),
    ]


def test_parse_sse_last_event_line_of_a_block_wins() -> None:
    assert parse_sse("event: a\nevent: b\ndata: x\n\n") == [Event("x", event="b")]


@pytest.mark.parametrize("name", sorted(RESERVED_EVENT_NAMES))
def test_parse_sse_yields_reserved_event_names_as_the_browser_would(name: str) -> None:
    [event] = parse_sse(f"event: {name}\ndata: x\n\n")
    assert (event.event, event.data) == (name, "x")


def test_parse_sse_records_comments_without_the_colon() -> None:
    decoder, events = feed_all([": hi\n:\n:  two\ndata: x\n: late\n\n"])
    assert events == [Event("x")]
    assert decoder.comments == [" hi", "", "  two", " late"]


@pytest.mark.parametrize("stream", ["data: a\n\ndata: b", "data: a\n\ndata: b\n"])
def test_parse_sse_discards_an_unterminated_final_block(stream: str) -> None:
    assert parse_sse(stream) == [Event("a")]


def test_parse_sse_accepts_str_and_bytes_alike() -> None:
    stream = "event: é\nid: 7\ndata: ✓\n\n"
    assert parse_sse(stream) == parse_sse(stream.encode()) == [Event("✓", event="é", id="7")]


# --- id -------------------------------------------------------------------------------------------


def test_parse_sse_gives_each_event_the_last_event_id_so_far() -> None:
    stream = "id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\nid\ndata: d\n\nid:\ndata: e\n\n"
    assert [event.id for event in parse_sse(stream)] == ["1", "1", "2", None, None]


def test_sse_decoder_applies_the_id_at_the_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: x\nid: 5\n") == []
    assert decoder.last_event_id == ""
    assert decoder.feed("\n") == [Event("x", id="5")]
    assert decoder.last_event_id == "5"


def test_sse_decoder_sets_the_last_event_id_from_a_block_without_data() -> None:
    decoder, events = feed_all(["id: 5\nevent: ignored\n\n"])
    assert events == []
    assert decoder.last_event_id == "5"
    assert decoder.feed("data: x\n\n") == [Event("x", id="5")]


def test_sse_decoder_resets_the_last_event_id_with_an_empty_id() -> None:
    decoder, events = feed_all(["id: 5\n\nid:\n\n"])
    assert (events, decoder.last_event_id) == ([], "")
    assert decoder.feed("data: x\n\n") == [Event("x")]


@pytest.mark.parametrize("bad_id", ["\0", "2\0", "\0" + "2", "a\0b"], ids=repr)
def test_sse_decoder_ignores_an_id_containing_nul(bad_id: str) -> None:
    decoder, events = feed_all([f"id: 1\ndata: a\n\nid: {bad_id}\ndata: b\n\n"])
    assert events == [Event("a", id="1"), Event("b", id="1")]
    assert decoder.last_event_id == "1"
    _, events = feed_all([f"id: 1\nid: {bad_id}\ndata: c\n\n"])
    assert events == [Event("c", id="1")]


def test_parse_sse_keeps_non_ascii_and_spaces_in_received_ids() -> None:
    # format_sse never writes such an id, but the decoder reports what a browser would.
    [event] = parse_sse("id:  é \ndata: x\n\n")
    assert (event.data, event.id) == ("x", " é ")


# --- retry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "retry"), [("0", 0), ("1000", 1000), ("007", 7)])
def test_sse_decoder_accepts_a_retry_of_ascii_digits(value: str, retry: int) -> None:
    decoder, events = feed_all([f"retry: {value}\ndata: x\n\n"])
    assert decoder.retry == retry
    assert events == [Event("x", retry=retry)]


@pytest.mark.parametrize(
    "value",
    ["1e3", "-1", "+1", " 5", "5 ", "1.5", "0x10", "\uff15", "\u00b2", "", "five", "1_000"],
    ids=repr,
)
def test_sse_decoder_ignores_a_retry_that_is_not_all_ascii_digits(value: str) -> None:
    decoder, events = feed_all([f"retry: 500\n\nretry: {value}\ndata: x\n\n"])
    assert decoder.retry == 500
    assert events == [Event("x")]


def test_sse_decoder_keeps_the_stream_retry_but_gives_events_only_their_own() -> None:
    decoder, events = feed_all(["retry: 100\n\ndata: a\n\nretry: 200\ndata: b\n\ndata: c\n\n"])
    assert [event.retry for event in events] == [None, 200, None]
    assert decoder.retry == 200


# --- decoded events -------------------------------------------------------------------------------


def test_decoded_event_encodes_like_format_sse() -> None:
    [event] = parse_sse("event: e\nid: 1\nretry: 5\ndata: a\ndata: b\n\n")
    assert event.encoded == format_sse("a\nb", event="e", id="1", retry=5)
    assert parse_sse(event.encoded) == [event]


# --- properties: any chunking gives the same events -----------------------------------------------

EVENTS = st.lists(
    st.tuples(
        st.text(),
        st.none()
        | st.text(st.characters(codec="utf-8", exclude_characters="\r\n")).filter(
            lambda name: name not in RESERVED_EVENT_NAMES
        ),
        st.none() | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)).map(str.strip),
        st.none() | st.text(max_size=3),
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[Event]]:
    """An encoded stream with random line ends and maybe a BOM, and the events it holds."""
    body = b""
    expected: list[Event] = []
    last_id = ""
    for data, event, id, comment in draw(EVENTS):
        body += format_sse(data, event=event, id=id, comment=comment)
        last_id = last_id if id is None else id
        normalised = data.replace("\r\n", "\n").replace("\r", "\n")
        expected.append(Event(normalised, event=event or None, id=last_id or None))
    # format_sse writes LF only; rewrite each as LF, CR or CRLF. A CR must not be followed by
    # the LF of an empty line, which would merge the two line ends into one CRLF.
    lines = body.split(b"\n")[:-1]
    ends = draw(
        st.lists(st.sampled_from([b"\n", b"\r", b"\r\n"]), min_size=len(lines), max_size=len(lines))
    )
    stream = draw(st.sampled_from([b"", UTF8_BOM]))
    previous = b""
    for line, end in zip(lines, ends, strict=True):
        if previous == b"\r" and not line and end == b"\n":
            end = b"\r\n"
        stream += line + end
        previous = end
    return stream, expected


@settings(max_examples=60, deadline=None)
@given(case=streams())
def test_sse_decoder_gives_the_same_events_for_a_split_at_every_point(
    case: tuple[bytes, list[Event]],
) -> None:
    stream, expected = case
    whole, events = feed_all([stream])
    assert events == expected
    for cut in range(len(stream) + 1):
        decoder, events = feed_all([stream[:cut], stream[cut:]])
        assert events == expected, cut
        assert state(decoder) == state(whole), cut


@settings(max_examples=150, deadline=None)
@given(case=streams(), data=st.data())
def test_sse_decoder_gives_the_same_events_for_any_chunking(
    case: tuple[bytes, list[Event]], data: st.DataObject
) -> None:
    stream, expected = case
    whole, _ = feed_all([stream])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[start:end] for start, end in itertools.pairwise(bounds)]
    decoder, events = feed_all(chunks)
    assert events == expected
    assert state(decoder) == state(whole)
    # The same cuts on the decoded text (str chunks) give the same events too.
    text = stream.decode()
    _, events = feed_all([text[start:end] for start, end in itertools.pairwise(bounds)])
    assert events == expected


@settings(max_examples=40, deadline=None)
@given(case=streams())
def test_sse_decoder_gives_the_same_events_fed_one_byte_at_a_time(
    case: tuple[bytes, list[Event]],
) -> None:
    stream, expected = case
    assert feed_all([stream[i : i + 1] for i in range(len(stream))])[1] == expected
