"""Django: stream a subscription from an async view, with Django served under ASGI.

```python
from django.http import HttpRequest, StreamingHttpResponse
from sse_channels.django import last_event_id, sse_response

async def events(request: HttpRequest) -> StreamingHttpResponse:
    return sse_response(store.subscribe("news", last_event_id=last_event_id(request)))
```

The body is an [EventStream][sse_channels.asgi.EventStream], the engine every helper
uses: heartbeats, ``max_lifetime``, and the write deadline (Django owns ``send``, so a
write that takes longer than ``send_timeout`` cancels Django's writing task). When the
client disconnects, Django cancels the response; the subscription is released at once.
The response carries ``Content-Encoding: identity``, which makes ``GZipMiddleware``
leave it alone.

[send_on_commit][sse_channels.django.send_on_commit] sends through any store once the
current database transaction commits (Django's ``transaction.on_commit``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.http import StreamingHttpResponse

from ._event import Event
from .asgi import StreamResponder, last_event_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._store import ChannelStore
    from .asgi import EventStream

__all__ = ["last_event_id", "send_on_commit", "sse_response"]


class _EventStreamHttpResponse(StreamingHttpResponse):  # type: ignore[misc]
    def __init__(self, stream: EventStream, headers: list[tuple[str, str]]) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "sse_response() needs an async view, with Django under ASGI"
            ) from None
        super().__init__(stream, status=stream.status)
        for name, value in [*headers, ("content-encoding", "identity")]:
            self[name] = value
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Django stops reading (client gone) by closing this iterator, but not the ones it
        # wraps: close the stream here so its subscription is released now, not at GC.
        try:
            async for part in super().__aiter__():
                yield part
        finally:
            await self._stream.aclose()

    def __iter__(self) -> Any:
        raise TypeError("sse_response() streams only under ASGI (Django's WSGI handler blocks)")

    def close(self) -> None:
        # Django calls this from a worker thread; the stream belongs to the event loop.
        # It matters when the body never started (client gone before the first byte).
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stream.close)
        super().close()


sse_response: StreamResponder[StreamingHttpResponse] = StreamResponder(
    _EventStreamHttpResponse, one_value_per_header=True
)


def send_on_commit(
    store: ChannelStore,
    channel: str,
    data: Any,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    using: str | None = None,
    robust: bool = False,
) -> None:
    """Send an event through ``store`` once the current transaction commits; never if not.

    For any backend (memory, Redis, PostgreSQL on another database)::

        with transaction.atomic():
            order.save()
            send_on_commit(store, f"orders:{order.customer_id}", {"id": order.id})

    Input is checked now (bad input raises here, and nothing is scheduled); ``data`` is
    serialised now too, so later changes to it are not sent. After the commit, Django calls
    ``store.send_sync`` in the thread that committed; outside ``atomic()`` (autocommit)
    that happens at once. The event is lost if the process dies between the commit and
    the send: with the PostgreSQL backend,
    [send_in][sse_channels.backends.postgres.send_in] writes it in the transaction
    itself instead.

    Args:
        store: the store to send through (any backend).
        channel: the channel, as for ``ChannelStore.send_sync``.
        data: the payload, serialised now.
        event: the event type, or ``None``.
        id: the event id, or ``None``.
        retry: the reconnection delay in milliseconds, or ``None``.
        using: the database alias whose transaction counts (Django's default if ``None``).
        robust: as for ``transaction.on_commit``: an error of the send is logged instead
            of raised to the code that committed.

    Raises:
        ValueError, TypeError: bad input; nothing is scheduled.
    """
    if type(channel) is not str or not channel or "*" in channel or not channel.isprintable():
        if type(channel) is not str:
            raise TypeError(f"channel must be str, not {type(channel).__name__}")
        raise ValueError(f"channel must be a non-empty printable name without '*': {channel!r}")
    draft = Event(data, event=event, id=id, retry=retry, channel=channel)

    def send() -> None:
        store.send_sync(channel, draft.data, event=event, id=id, retry=retry)

    transaction.on_commit(send, using=using, robust=robust)
