"""Litestar: stream a subscription from a route handler.

```python
from litestar import Request, get
from litestar.response import Stream
from sse_channels.litestar import last_event_id, sse_response

@get("/events")
async def events(request: Request) -> Stream:
    return sse_response(store.subscribe("news", last_event_id=last_event_id(request)))
```

The response is served by an [EventStream][sse_channels.asgi.EventStream], the engine
every helper uses, with Litestar's ``send`` and ``receive``: Litestar sends the status and
headers (its cookies, its ``response_headers``), then the engine writes the body with
heartbeats, the write deadline, ``max_lifetime`` and disconnect detection, and releases
the subscription however the response ends (including ``HEAD``). A route's own
``background`` runs after the stream, as usual.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from litestar.response import Stream
from litestar.response.streaming import ASGIStreamingResponse

from .asgi import StreamResponder, last_event_id

if TYPE_CHECKING:
    from collections.abc import Iterable

    from litestar.connection import Request
    from litestar.datastructures import Cookie
    from litestar.response.base import ASGIResponse
    from litestar.types import Receive, Scope, Send

    from .asgi import EventStream

__all__ = ["last_event_id", "sse_response"]


class _EventStreamResponse(Stream):
    """A ``Stream`` whose ASGI response is served by the engine instead of iterated."""

    __slots__ = ("stream",)

    def __init__(self, stream: EventStream, headers: list[tuple[str, str]]) -> None:
        super().__init__(stream, status_code=stream.status, headers=dict(headers))
        self.stream = stream

    def to_asgi_response(
        self,
        app: Any,
        request: Request[Any, Any, Any],
        *,
        cookies: Iterable[Cookie] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        **ignored: Any,  # background, media_type, status_code...: this response sets them
    ) -> ASGIResponse:
        return _ServedEventStream(
            self.stream,
            background=self.background or ignored.get("background"),
            cookies=itertools.chain(self.cookies, cookies or ()),
            headers={**(headers or {}), **self.headers},
            is_head_response=is_head_response,
            media_type="text/event-stream",
            status_code=self.stream.status,
        )


class _ServedEventStream(ASGIStreamingResponse):
    __slots__ = ("stream",)

    def __init__(self, stream: EventStream, **options: Any) -> None:
        super().__init__(iterator=stream, **options)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # ASGIResponse.__call__, with the engine writing the body: Litestar has sent the
        # status and headers (its cookies, its response_headers) by then.
        try:
            await self.start_response(send=send)
            await self.stream.serve(scope, receive, send, headers_sent=True)  # type: ignore[arg-type]
            await self.after_response()
        finally:
            self.stream.close()  # send() raised, or HEAD: released however it ended


sse_response: StreamResponder[Stream] = StreamResponder(
    _EventStreamResponse, one_value_per_header=True
)
