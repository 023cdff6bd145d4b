"""sse_channels.asgi's public surface: curated, sorted, and named after the package."""

from __future__ import annotations

import sse_channels.asgi

EXPECTED = {
    "EXPIRY_RETRY",
    "HEARTBEAT",
    "SSE_HEADERS",
    "EventStream",
    "EventStreamBody",
    "EventStreamResponse",
    "HeaderItems",
    "SSEApp",
    "StreamObserver",
    "StreamOptions",
    "StreamResponder",
    "StreamSettings",
    "close_on_signal",
    "event_stream",
    "header_fields",
    "last_event_id",
    "opening_comment",
    "plain_response",
    "raw_headers",
}


def test_asgi_exports_exactly_the_curated_names() -> None:
    assert set(sse_channels.asgi.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(sse_channels.asgi, name), name


def test_asgi_classes_and_functions_report_the_package_as_their_module() -> None:
    for name in sse_channels.asgi.__all__:
        obj = getattr(sse_channels.asgi, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "sse_channels.asgi", name


def test_event_stream_body_is_the_engine_itself() -> None:
    assert sse_channels.asgi.EventStreamBody is sse_channels.asgi.EventStream
