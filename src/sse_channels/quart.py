"""Quart: stream a subscription from a route.

```python
from quart import Response, request
from sse_channels.quart import last_event_id, sse_response

@app.get("/events")
async def events() -> Response:
    return sse_response(store.subscribe("news", last_event_id=last_event_id(request)))
```

When the client disconnects, Quart cancels the response while it is being sent and closes
its body; the subscription is closed with it. There is no write deadline here (Quart owns
``send``): cap connections with ``max_lifetime``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from quart import Response
from werkzeug.datastructures import Headers

from .asgi import event_stream, raw_headers
from .asgi import last_event_id as _last_event_id

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from quart import Request

    from ._subscription import Subscription
    from ._types import Scope

__all__ = ["last_event_id", "sse_response"]


def sse_response(
    subscription: Subscription,
    *,
    heartbeat: float | None = 15.0,
    retry: int | None = None,
    max_lifetime: float | None = None,
    lifetime_jitter: float = 0.1,
    status: int = 200,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> Response:
    """A Quart ``Response`` that streams ``subscription``; return it from a route.

    It carries the [SSE_HEADERS][sse_channels.asgi.SSE_HEADERS] and no timeout (Quart
    otherwise ends every response after ``RESPONSE_TIMEOUT``, 60 s by default); the body
    is [event_stream][sse_channels.asgi.event_stream]: an opening comment at once, each
    batch of events in one chunk, heartbeats, an end after ``max_lifetime``.

    Args:
        subscription: what to stream; the response owns it from now on and closes it when
            the stream ends or the client disconnects.
        heartbeat: seconds of silence before a comment is written; ``None``: never.
        retry: an initial ``retry:`` (reconnection delay in ms) for the browser.
        max_lifetime: end the stream after about this many seconds; the browser
            reconnects and resumes.
        lifetime_jitter: spread ``max_lifetime`` by up to this fraction either way.
        status: the HTTP status.
        headers: extra response headers (``Connection``, ``Content-Length``,
            ``Content-Encoding``... are refused, as for ``EventStreamResponse``).

    Raises:
        ValueError, TypeError: an option is out of range or a header is refused; the
            subscription is closed.
    """
    try:
        body = event_stream(
            subscription,
            heartbeat=heartbeat,
            retry=retry,
            max_lifetime=max_lifetime,
            lifetime_jitter=lifetime_jitter,
        )
        fields = Headers(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers(headers)]
        )
    except BaseException:
        subscription.close()
        raise
    response = Response(body, status=status, headers=fields)
    response.timeout = None
    return response


def last_event_id(request: Request) -> str | None:
    """The ``Last-Event-ID`` header of a request, else its ``?last_event_id=``."""
    return _last_event_id(cast("Scope", request.scope))
