"""Starlette and FastAPI: a response that streams a subscription, returned from a route.

```python
from sse_channels.starlette import SSEResponse, last_event_id


async def events(request: Request) -> SSEResponse:
    return SSEResponse(store.subscribe("news", last_event_id=last_event_id(request)))
```

A thin front on [EventStream][sse_channels.asgi.EventStream], served with Starlette's own
``send``: the same options and guarantees as everywhere (first comment at once,
heartbeats, write deadline, ``max_lifetime``, disconnect detection, the subscription
released on every path). Install with ``sse-channels[starlette]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response
from typing_extensions import Unpack

from .asgi import EventStreamResponse, StreamSettings, last_event_id, raw_headers

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from starlette.background import BackgroundTask
    from starlette.types import Receive, Scope, Send

    from ._subscription import Subscription
    from .asgi import StreamOptions

__all__ = ["SSEResponse", "last_event_id"]


class SSEResponse(Response):
    """Stream ``subscription`` as ``text/event-stream``; return it from a route.

    Headers set on it before it is sent (``response.headers[...]``, ``set_cookie``) and
    its ``status_code`` are what is sent. ``background`` runs after the stream has ended
    (unless it raised).

    Args:
        subscription: what to stream; the response owns it and releases it on every path,
            including when it is never sent (call ``close()`` if you drop it unsent).
        status_code: the HTTP status.
        headers: extra headers (``Connection``, ``Content-Length``, ``Content-Encoding``,
            ``Transfer-Encoding`` and ``Keep-Alive`` are refused).
        background: a task to run once the stream has ended.
        options: a [StreamOptions][sse_channels.asgi.StreamOptions], or its fields as
            keyword ``settings``.
        expires: when the credential that opened the stream expires (a timezone-aware
            ``datetime``, e.g. a JWT's ``exp``): the stream ends then with a ``retry:``
            hint, and the browser reconnects and is authorised again.

    Raises:
        ValueError, TypeError: an option is out of range, a header is refused, or
            ``expires`` is not a timezone-aware ``datetime``.
        CredentialExpiredError: ``expires`` is not in the future.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        subscription: Subscription,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        *,
        options: StreamOptions | None = None,
        expires: datetime | None = None,
        **settings: Unpack[StreamSettings],
    ) -> None:
        # Checked now, so that a bad option fails in the route, not once streaming.
        response = EventStreamResponse(
            subscription,
            options,
            status=status_code,
            headers=headers,
            expires=expires,
            **settings,
        )
        self._response = response
        self.subscription = subscription
        self.options = response.options
        self.status_code = status_code
        self.background = background
        # Already merged (a header named like an SSE header, in any case, replaces it).
        self.raw_headers = response.raw_headers

    def close(self) -> None:
        """Release the subscription of a response that will not be sent."""
        self.subscription.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            # The status and headers as they are at sending time (cookies, middleware).
            response = self._response
            response.status = self.status_code
            response.raw_headers = raw_headers(
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers]
            )
            await response(scope, receive, send)
        finally:
            self.subscription.close()
        if self.background is not None:
            await self.background()
