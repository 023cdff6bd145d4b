"""The client's view of a response body: the project's decoder, carried across reconnects."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sse_channels import Event, format_sse, parse_sse
from sse_channels.client import Gap
from sse_channels.client._gap import as_item
from sse_channels.client._parser import ResponseParser

BOM = "\ufeff".encode()


def feed_all(parser: ResponseParser, chunks: list[bytes]) -> list[Event]:
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_parser_drops_the_opening_comment_and_retry_block() -> None:
    parser = ResponseParser("")
    assert parser.feed(b": ok\nretry: 1000\n\n") == []
    assert parser.retry == 1000
    assert parser.feed(b"data: x\n\n") == [Event("x")]


def test_parser_keeps_the_previous_connections_id_for_events_without_one() -> None:
    parser = ResponseParser("41")
    (event,) = parser.feed(b"data: no id line\n\n")
    assert event.id == "41"
    assert parser.last_event_id == "41"
    parser.feed(b"id\n\n")  # an empty id resets it, as in a browser
    assert parser.last_event_id == ""


def test_parser_strips_one_bom_even_when_it_arrives_byte_by_byte() -> None:
    body = BOM + b"data: a\n\n"
    for split in range(len(body) + 1):
        parser = ResponseParser("7")
        events = feed_all(parser, [body[:split], body[split:]])
        assert [(e.data, e.id) for e in events] == [("a", "7")]
    parser = ResponseParser("")
    assert feed_all(parser, [b"\xef", b"\xbb", b"\xbf", b"data: b\n\n"]) == [Event("b")]


def test_parser_strips_only_one_bom() -> None:
    parser = ResponseParser("")
    # The second BOM belongs to the field name, which then is not "data": ignored.
    assert parser.feed(BOM + BOM + b"data: a\n\ndata: b\n\n") == [Event("b")]


def test_parser_does_not_let_comments_pile_up() -> None:
    parser = ResponseParser("")
    for _ in range(1000):
        parser.feed(b": ping\n\n")
    assert parser.feed(b"data: x\n\n") == [Event("x")]


blocks = st.lists(
    st.builds(
        lambda data, event, id: format_sse(data, event=event, id=id),
        st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
        st.one_of(st.none(), st.sampled_from(["message", "news", "gap"])),
        st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9-]{1,8}", fullmatch=True)),
    ),
    max_size=8,
)


@given(blocks, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_parser_gives_the_same_events_however_the_body_is_split(
    encoded: list[bytes], cuts: list[int]
) -> None:
    body = b"".join(encoded)
    points = sorted({min(cut, len(body)) for cut in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert feed_all(ResponseParser(""), chunks) == parse_sse(body)


@given(blocks)
def test_parser_with_a_bom_gives_what_a_fresh_decoder_gives(encoded: list[bytes]) -> None:
    body = b"".join(encoded)
    assert ResponseParser("").feed(BOM + body) == parse_sse(BOM + body)


def test_as_item_turns_a_well_formed_gap_signal_into_a_gap() -> None:
    event = Event('{"reason":"expired","channel":"news"}', event="gap", id="k-9")
    gap = as_item(event)
    assert gap == Gap("expired", "news", "k-9", event)


def test_as_item_leaves_other_events_and_malformed_gaps_alone() -> None:
    for event in (
        Event("x"),
        Event('{"reason":"expired"}', event="news"),
        Event("not json", event="gap"),
        Event('["a list"]', event="gap"),
        Event('{"reason": 5}', event="gap"),
    ):
        assert as_item(event) is event
    gap = as_item(Event('{"reason":"lost","channel":null}', event="gap"))
    assert isinstance(gap, Gap)
    assert gap.channel is None
