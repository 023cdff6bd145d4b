"""Starlette and FastAPI: a response that streams a subscription, returned from a route.

```python
from sse_channels.starlette import SSEResponse


async def events(request: Request) -> SSEResponse:
    return SSEResponse(store.subscribe("news", last_event_id=last_event_id(request)))
```

A thin layer over [EventStreamResponse][sse_channels.asgi.EventStreamResponse]: same
options, same guarantees (first comment at once, heartbeats, write deadline, disconnect
detection, the subscription closed on every path). Install with ``sse-channels[starlette]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from .asgi import _FORBIDDEN_HEADERS, EventStreamResponse
from .asgi import last_event_id as _scope_last_event_id

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from starlette.background import BackgroundTask
    from starlette.requests import HTTPConnection
    from starlette.types import Receive, Scope, Send

    from ._subscription import Subscription

__all__ = ["SSEResponse", "last_event_id"]


def last_event_id(request: HTTPConnection) -> str | None:
    """The request's ``Last-Event-ID`` header, else its ``last_event_id`` query parameter.

    ``EventSource`` sends the header when it reconnects; it cannot set headers on its first
    connection, so a page that knows where to resume puts the id in the URL instead.
    """
    return _scope_last_event_id(request.scope)


class SSEResponse(Response):
    """Stream ``subscription`` as ``text/event-stream``; return it from a route.

    Headers set on it before it is sent (``response.headers[...]``, ``set_cookie``) are
    sent too. ``background`` runs after the stream has ended (unless it raised).

    Args:
        subscription: what to stream; the response owns it and closes it on every path,
            including when it is never sent (call ``close()`` if you drop it unsent).
        status_code: the HTTP status.
        headers: extra headers (``Connection``, ``Content-Length``, ``Content-Encoding``,
            ``Transfer-Encoding`` and ``Keep-Alive`` are refused).
        background: a task to run once the stream has ended.
        heartbeat: as for [EventStreamResponse][sse_channels.asgi.EventStreamResponse].
        retry: as for ``EventStreamResponse``.
        send_timeout: as for ``EventStreamResponse``.
        max_lifetime: as for ``EventStreamResponse``.
        lifetime_jitter: as for ``EventStreamResponse``.

    Raises:
        ValueError, TypeError: an option is out of range or a header is refused.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        subscription: Subscription,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        *,
        heartbeat: float | None = 15.0,
        retry: int | None = None,
        send_timeout: float | None = 30.0,
        max_lifetime: float | None = None,
        lifetime_jitter: float = 0.1,
    ) -> None:
        self.stream = EventStreamResponse(
            subscription,
            heartbeat=heartbeat,
            retry=retry,
            send_timeout=send_timeout,
            max_lifetime=max_lifetime,
            lifetime_jitter=lifetime_jitter,
            status=status_code,
            headers=headers,
        )
        self.subscription = subscription
        self.status_code = status_code
        self.background = background
        # Already merged (a header named like an SSE header, in any case, replaces it).
        self.raw_headers = list(self.stream.raw_headers)

    def close(self) -> None:
        """Release the subscription of a response that will not be sent."""
        self.subscription.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.stream
        try:
            # Headers changed on the response after it was made (cookies, middleware) win.
            stream.status = self.status_code
            stream.raw_headers = _checked(self.raw_headers)
            await stream(scope, receive, send)
        finally:
            self.subscription.close()
        if self.background is not None:
            await self.background()


def _checked(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    headers = list(raw)
    for name, _ in headers:
        if name.decode("latin-1").lower() in _FORBIDDEN_HEADERS:
            raise ValueError(f"an event stream must not set the {name.decode()!r} header")
    return headers
