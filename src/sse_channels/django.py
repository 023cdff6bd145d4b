"""Django: stream a subscription from an async view, with Django served under ASGI.

```python
from django.http import HttpRequest, StreamingHttpResponse
from sse_channels.django import last_event_id, sse_response

async def events(request: HttpRequest) -> StreamingHttpResponse:
    return sse_response(store.subscribe("news", last_event_id=last_event_id(request)))
```

When the client disconnects, Django's ASGI handler cancels the response while it is being
sent; the subscription is then closed at once, whether the response was waiting for
events or writing. There is no write deadline here (Django owns ``send``): cap connections
with ``max_lifetime``, or route the stream's path to an [SSEApp][sse_channels.asgi.SSEApp]
in the ASGI application.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from django.http import StreamingHttpResponse

from .asgi import _single_valued, event_stream, raw_headers
from .asgi import last_event_id as _last_event_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Mapping

    from ._subscription import Subscription
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
) -> StreamingHttpResponse:
    """A ``StreamingHttpResponse`` that streams ``subscription``; return it from an async view.

    It carries the [SSE_HEADERS][sse_channels.asgi.SSE_HEADERS] and ``Content-Encoding:
    identity``, which makes Django's ``GZipMiddleware`` leave it alone (it compresses
    streaming responses otherwise). The body is
    [event_stream][sse_channels.asgi.event_stream]: an opening comment at once, each batch
    of events in one chunk, heartbeats, an end after ``max_lifetime``.

    Args:
        subscription: what to stream; the response owns it from now on and closes it when
            the stream ends, the client disconnects, or Django closes the response unsent.
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
        RuntimeError: not called in an event loop (a sync view, or Django under WSGI).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        subscription.close()
        raise RuntimeError("sse_response() needs an async view, with Django under ASGI") from None
    try:
        body = event_stream(
            subscription,
            heartbeat=heartbeat,
            retry=retry,
            max_lifetime=max_lifetime,
            lifetime_jitter=lifetime_jitter,
        )
        fields = _single_valued(raw_headers(headers))
        return _EventStreamHttpResponse(body, subscription, loop, status=status, headers=fields)
    except BaseException:
        subscription.close()
        raise


def last_event_id(request: Any) -> str | None:
    """The ``Last-Event-ID`` header of an ASGI request, else its ``?last_event_id=``."""
    return _last_event_id(request.scope)


class _EventStreamHttpResponse(StreamingHttpResponse):  # type: ignore[misc]
    def __init__(
        self,
        body: EventStreamBody,
        subscription: Subscription,
        loop: asyncio.AbstractEventLoop,
        *,
        status: int,
        headers: list[tuple[str, str]],
    ) -> None:
        super().__init__(body, status=status)
        for name, value in [*headers, ("content-encoding", "identity")]:
            self[name] = value
        self._body = body
        self._subscription = subscription
        self._loop = loop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Django stops reading (client gone) by closing this iterator, but not the ones it
        # wraps: close the body here so its subscription is released now, not at GC.
        try:
            async for part in super().__aiter__():
                yield part
        finally:
            await self._body.aclose()

    def __iter__(self) -> Any:
        raise TypeError("sse_response() streams only under ASGI (Django's WSGI handler blocks)")

    def close(self) -> None:
        # Django calls this from a worker thread; the subscription belongs to the event loop.
        # It matters when the body never started (client gone before the first byte).
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._subscription.close)
        super().close()
