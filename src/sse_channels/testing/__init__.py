"""Helpers for testing code that uses sse-channels.

- Routing: [ChannelRecorder][sse_channels.testing.ChannelRecorder] records what was sent to
  which channel; [collect][sse_channels.testing.collect] and
  [drain][sse_channels.testing.drain] read a subscription with a deadline or without
  waiting; [assert_events][sse_channels.testing.assert_events] compares events;
  [gap_reason][sse_channels.testing.gap_reason] recognises gap signals.
- Endpoints: [connect_sse][sse_channels.testing.connect_sse] drives an ASGI event stream
  without a server.
"""

from __future__ import annotations

from .._testing_asgi import SSEStream, connect_sse
from .._testing_client import collect_sse
from .._testing_store import (
    ChannelRecorder,
    CollectTimeoutError,
    assert_events,
    collect,
    drain,
    gap_reason,
)

__all__ = [
    "ChannelRecorder",
    "CollectTimeoutError",
    "SSEStream",
    "assert_events",
    "collect",
    "collect_sse",
    "connect_sse",
    "drain",
    "gap_reason",
]

# Reprs and docs say ``sse_channels.testing.X``, not the private module it lives in.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("sse_channels._"):
        _obj.__module__ = __name__
del _name, _obj
