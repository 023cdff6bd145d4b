"""Litestar: stream a subscription from a route handler.

```python
from litestar import Request, get
from litestar.response import Stream
from sse_channels.litestar import last_event_id, sse_response

@get("/events")
async def events(request: Request) -> Stream:
    return sse_response(store.subscribe("news", last_event_id=last_event_id(request)))
```

Litestar's streaming response stops when the client disconnects; the subscription is then
closed by the response's background task, whether the stream was waiting or writing.
There is no write deadline here (Litestar owns ``send``): cap connections with
``max_lifetime``, or return an [EventStreamResponse][sse_channels.asgi.EventStreamResponse]
from a handler annotated ``-> EventStreamResponse``: Litestar passes ASGI apps through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from litestar.background_tasks import BackgroundTask
from litestar.response import Stream

from .asgi import event_stream, raw_headers
from .asgi import last_event_id as _last_event_id

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from litestar.connection import ASGIConnection

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
) -> Stream:
    """A Litestar ``Stream`` response that streams ``subscription``; return it from a handler.

    It carries the [SSE_HEADERS][sse_channels.asgi.SSE_HEADERS]; the body is
    [event_stream][sse_channels.asgi.event_stream]: an opening comment at once, each batch
    of events in one chunk, heartbeats, an end after ``max_lifetime``. Its background task
    closes the stream (a route's own ``background`` does not run for this response).

    Args:
        subscription: what to stream; the response owns it from now on and closes it when
            the stream ends or the client disconnects, even in the middle of a write.
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
        fields = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers(headers)}
    except BaseException:
        subscription.close()
        raise

    async def release() -> None:
        # Litestar leaves the body unclosed when the client goes mid-write: close it (and
        # so the subscription) now rather than when it is garbage-collected.
        await body.aclose()

    return Stream(body, status_code=status, headers=fields, background=BackgroundTask(release))


def last_event_id(request: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The ``Last-Event-ID`` header of a request, else its ``?last_event_id=``."""
    return _last_event_id(cast("Scope", request.scope))
