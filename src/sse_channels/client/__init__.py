"""A reconnecting client for event streams: ``pip install "sse-channels[client]"``.

[EventSource][sse_channels.client.EventSource] (async, on asyncio or trio) and
[SyncEventSource][sse_channels.client.SyncEventSource] (threads, scripts) iterate over a
URL's events as a browser's ``EventSource`` would see them, and reconnect by themselves:
``Last-Event-ID`` from the last id seen, the server's ``retry:``, exponential
[Backoff][sse_channels.client.Backoff] with jitter that starts over only after a healthy
connection, ``Retry-After``, a [retry strategy][sse_channels.client.default_retry], a
``refresh`` hook for fresh credentials, [Gap][sse_channels.client.Gap] values for gap
signals, and [state changes][sse_channels.client.StateChange] to observe. They read any
server's event stream, not only this library's.

The errors, besides httpx's own network errors (retried by default)::

    SSEChannelsError
    └── ClientError              the stream cannot be read and will not be retried
        ├── StatusError          an HTTP status other than 200 and 204 (``.status``)
        └── ContentTypeError     a 200 that is not ``text/event-stream``
"""

from __future__ import annotations

try:
    import httpx as _httpx  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'sse_channels.client needs httpx: pip install "sse-channels[client]"'
    ) from exc

from ._async import DEFAULT_TIMEOUT, EventSource
from ._backoff import Backoff, BackoffTimer
from ._errors import ClientError, ContentTypeError, StatusError
from ._gap import Gap
from ._retry import RetryStrategy, default_retry, parse_retry_after
from ._session import Reconnect
from ._states import ConnectionState, StateChange
from ._sync import SyncEventSource

__all__ = [
    "DEFAULT_TIMEOUT",
    "Backoff",
    "BackoffTimer",
    "ClientError",
    "ConnectionState",
    "ContentTypeError",
    "EventSource",
    "Gap",
    "Reconnect",
    "RetryStrategy",
    "StateChange",
    "StatusError",
    "SyncEventSource",
    "default_retry",
    "parse_retry_after",
]

# Reprs and docs say ``sse_channels.client.X``, not the private module it lives in.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("sse_channels.client._"):
        _obj.__module__ = __name__
del _name, _obj
