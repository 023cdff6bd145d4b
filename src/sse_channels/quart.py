"""Quart: stream a subscription from a route.

```python
from quart import Response, request
from sse_channels.quart import last_event_id, sse_response

@app.get("/events")
async def events() -> Response:
    return sse_response(store.subscribe("news", last_event_id=last_event_id(request)))
```

The body is an [EventStream][sse_channels.asgi.EventStream], the engine every helper
uses: heartbeats, ``max_lifetime``, and the write deadline (Quart owns ``send``, so a
write that takes longer than ``send_timeout`` cancels Quart's writing task). The response
has no timeout (Quart otherwise ends every response after ``RESPONSE_TIMEOUT``). When the
client disconnects, Quart cancels the response and closes its body; the subscription is
released with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response
from werkzeug.datastructures import Headers

from .asgi import StreamResponder, last_event_id

if TYPE_CHECKING:
    from .asgi import EventStream

__all__ = ["last_event_id", "sse_response"]


def _response(stream: EventStream, headers: list[tuple[str, str]]) -> Response:
    response = Response(stream, status=stream.status, headers=Headers(headers))
    response.timeout = None
    return response


sse_response: StreamResponder[Response] = StreamResponder(_response)
