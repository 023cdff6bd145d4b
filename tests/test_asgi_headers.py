"""sse_channels.asgi: the response headers, the opening comment, the last event id."""

from __future__ import annotations

from typing import Any

import pytest

from _asgi_helpers import OPENING, stream_app, until
from sse_channels import ChannelStore
from sse_channels.asgi import SSE_HEADERS, EventStreamResponse, last_event_id, opening_comment
from sse_channels.testing import connect_sse

pytestmark = pytest.mark.anyio


# -- headers and the opening comment ----------------------------------------------------------


def test_sse_headers_are_the_stream_headers_and_nothing_else() -> None:
    assert dict(SSE_HEADERS) == {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
    }
    with pytest.raises(TypeError):
        SSE_HEADERS["connection"] = "keep-alive"  # type: ignore[index]


async def test_response_sends_headers_and_opening_comment_before_any_event() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription)) as stream:
            await until(lambda: len(stream.chunks) == 1)
            assert stream.status == 200
            assert stream.headers == dict(SSE_HEADERS)
            assert "connection" not in stream.headers
            assert "content-encoding" not in stream.headers
            assert stream.chunks == [OPENING]
            assert stream.events == []


async def test_response_extra_headers_add_to_or_replace_the_stream_headers() -> None:
    async with ChannelStore() as store:
        app = stream_app(
            store.subscribe("news"),
            headers={"Cache-Control": "no-cache", "X-Custom": "1"},
            status=201,
        )
        async with connect_sse(app) as stream:
            assert stream.status == 201
            assert stream.headers["cache-control"] == "no-cache"
            assert stream.headers["x-custom"] == "1"
            assert [name for name, _ in stream.raw_headers].count(b"cache-control") == 1


@pytest.mark.parametrize(
    "header",
    ["Connection", "content-length", "Transfer-Encoding", "content-encoding", "keep-alive"],
)
async def test_response_refuses_headers_that_break_streaming(header: str) -> None:
    async with ChannelStore() as store, store.subscribe("news") as subscription:
        with pytest.raises(ValueError, match="must not set"):
            EventStreamResponse(subscription, headers={header: "x"})


async def test_retry_is_written_in_the_opening_block() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(stream_app(store.subscribe("news"), retry=2500)) as stream,
    ):
        await until(lambda: len(stream.chunks) == 1)
        assert stream.chunks == [b": ok\nretry: 2500\n\n"]
        assert opening_comment(2500) == stream.chunks[0]


def test_last_event_id_prefers_the_header_and_ignores_empty_values() -> None:
    scope: dict[str, Any] = {"headers": [(b"last-event-id", b"7")], "query_string": b""}
    assert last_event_id(scope) == "7"
    scope["query_string"] = b"last_event_id=3"
    assert last_event_id(scope) == "7"
    scope["headers"] = [(b"last-event-id", b"")]
    assert last_event_id(scope) == "3"
    assert last_event_id({"headers": [], "query_string": b"last_event_id="}) is None
    assert last_event_id({"headers": [], "query_string": b"x=1"}) is None
