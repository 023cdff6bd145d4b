"""Stream subscriptions as ``text/event-stream`` from any ASGI server or framework.

One engine, several fronts, none depending on anything but ASGI and this package:

- [EventStream][sse_channels.asgi.EventStream]: the engine. One subscription, one writer
  loop: an opening comment at once, each batch of events in one write, heartbeats, a
  write deadline, a maximum lifetime, the subscription released however the stream ends.
  Served where you own ``send``, iterated where a framework does.
- [EventStreamResponse][sse_channels.asgi.EventStreamResponse]: an ASGI app that serves
  one subscription.
- [event_stream][sse_channels.asgi.event_stream]: the body iterator, for frameworks that
  take a streaming body.
- [SSEApp][sse_channels.asgi.SSEApp]: a mountable ASGI app built from a store: it resolves
  the request's channels, asks an ``authorize`` hook, resumes from ``Last-Event-ID``.
- [StreamOptions][sse_channels.asgi.StreamOptions]: how a stream behaves, validated once;
  every front also takes its fields as keyword arguments.
- [StreamResponder][sse_channels.asgi.StreamResponder]: the ``sse_response`` of the
  Django, Litestar and Quart helpers, written once.

[close_on_signal][sse_channels.asgi.close_on_signal] closes a store when the server is told
to stop, so that open streams end and the server can drain. Every front takes ``expires=``
(``SSEApp``: ``authorize`` returns it), the credential's expiry: the stream ends then with
a ``retry:`` of [EXPIRY_RETRY][sse_channels.asgi.EXPIRY_RETRY] ms, and the browser
reconnects and is authorised again.
"""

from __future__ import annotations

from ._app import SSEApp
from ._engine import EventStream
from ._expiry import EXPIRY_RETRY
from ._http import (
    HEARTBEAT,
    SSE_HEADERS,
    HeaderItems,
    header_fields,
    last_event_id,
    plain_response,
    raw_headers,
)
from ._options import StreamObserver, StreamOptions, StreamSettings, opening_comment
from ._response import EventStreamResponse, StreamResponder, event_stream
from ._signals import close_on_signal

#: The iterator ``event_stream()`` returns (the engine itself); kept for old annotations.
EventStreamBody = EventStream

__all__ = [
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
]

# Reprs and docs say ``sse_channels.asgi.X``, not the private module it lives in.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(f"{__name__}._"):
        _obj.__module__ = __name__
del _name, _obj
