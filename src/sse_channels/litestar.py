"""Litestar: stream a subscription from a route handler.

```python
from litestar import Request, get
from litestar.response import Stream
from sse_channels.litestar import last_event_id, sse_response

@get("/events")
async def events(request: Request) -> Stream:
    return sse_response(store.subscribe("news", last_event_id=last_event_id(request)))
```

Litestar's streaming response stops when the client disconnects; the subscription is
closed when the response ends, however it ends: the stream was waiting or writing, ``send``
raised, or the request was a ``HEAD``.
There is no write deadline here (Litestar owns ``send``): cap connections with
``max_lifetime``, or return an [EventStreamResponse][sse_channels.asgi.EventStreamResponse]
from a handler annotated ``-> EventStreamResponse``: Litestar passes ASGI apps through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from litestar.response import Stream
from litestar.response.streaming import ASGIStreamingResponse

from .asgi import _single_valued, event_stream, raw_headers
from .asgi import last_event_id as _last_event_id

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from litestar.connection import ASGIConnection
    from litestar.response.base import ASGIResponse
    from litestar.types import Receive, Send
    from litestar.types import Scope as LitestarScope

    from ._subscription import Subscription
    from ._types import Scope
    from .asgi import EventStreamBody

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
    of events in one chunk, heartbeats, an end after ``max_lifetime``. The stream is closed
    when the response ends, and a route's own ``background`` runs as usual.

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
            ``Content-Encoding``... are refused, as for ``EventStreamResponse``), each name
            at most once: the framework keeps one value per header.

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
        fields = dict(_single_valued(raw_headers(headers)))
    except BaseException:
        subscription.close()
        raise

    return _EventStream(body, status_code=status, headers=fields)


class _EventStream(Stream):
    """A ``Stream`` whose ASGI response closes the body (and so the subscription) at its end.

    Litestar leaves the body unclosed when the client goes mid-write, when ``send`` raises
    (it then skips background tasks too) and for ``HEAD``.
    """

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(*args, **kwargs)
        response.__class__ = _ClosingStreamingResponse  # same slots: only __call__ differs
        return response


class _ClosingStreamingResponse(ASGIStreamingResponse):
    __slots__ = ()

    async def __call__(self, scope: LitestarScope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await cast("EventStreamBody", self.iterator).aclose()


def last_event_id(request: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The ``Last-Event-ID`` header of a request, else its ``?last_event_id=``."""
    return _last_event_id(cast("Scope", request.scope))
