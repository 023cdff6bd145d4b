"""The fronts on the engine: an ASGI response, a body iterator, a framework helper's call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar, final

from typing_extensions import Unpack

from ._engine import EventStream
from ._http import check_status, header_fields, raw_headers
from ._options import StreamOptions, StreamSettings, stream_options

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from .._subscription import Subscription
    from .._types import Receive, Scope, Send
    from ._http import HeaderItems

__all__ = ["EventStreamResponse", "StreamResponder", "event_stream"]

R = TypeVar("R")


@final
class EventStreamResponse:
    """An ASGI app that streams one subscription as a ``text/event-stream`` response.

    Called as ``await response(scope, receive, send)``, it streams with
    [EventStream][sse_channels.asgi.EventStream]: the status, the
    [SSE_HEADERS][sse_channels.asgi.SSE_HEADERS] (plus ``headers``) and an opening comment
    at once, each batch of pending events in one ``send``, a comment heartbeat after
    ``heartbeat`` idle seconds, a clean end when the subscription ends or ``max_lifetime``
    has passed, and an abrupt one when the client disconnects, ``send`` raises
    ``OSError`` or one write takes longer than ``send_timeout``. The subscription is
    released on every path. A ``HEAD`` request gets the headers alone.

    Args:
        subscription: what to stream; the response owns it from now on (it is released
            if this raises).
        options: a [StreamOptions][sse_channels.asgi.StreamOptions]; or give its fields
            as keyword ``settings`` instead (``heartbeat=``, ``retry=``, ``send_timeout=``,
            ``max_lifetime=``, ``lifetime_jitter=``, ``observer=``).
        status: the HTTP status.
        headers: extra response headers; one named like an SSE header replaces it.
            ``Connection``, ``Content-Length``, ``Transfer-Encoding``, ``Keep-Alive`` and
            ``Content-Encoding`` are refused.
        ends_in: seconds after which the stream ends whatever its ``max_lifetime``.
        expires: when the credential that opened the stream expires (a timezone-aware
            ``datetime``): the stream ends then with a ``retry:`` hint, and the
            subscription's ``close_reason`` is ``"expired"``.

    Raises:
        ValueError, TypeError: an option is out of range, a header is refused, or
            ``expires`` is not a timezone-aware ``datetime``.
        CredentialExpiredError: ``expires`` is not in the future.

    The subscription is released if it raises.
    """

    __slots__ = ("ends_in", "expires", "options", "raw_headers", "status", "stream", "subscription")

    def __init__(
        self,
        subscription: Subscription,
        options: StreamOptions | None = None,
        *,
        status: int = 200,
        headers: HeaderItems | None = None,
        ends_in: float | None = None,
        expires: datetime | None = None,
        **settings: Unpack[StreamSettings],
    ) -> None:
        try:
            self.options = stream_options(options, settings)
            self.status = check_status(status)
            self.raw_headers = raw_headers(headers)
            #: The engine that serves it, made now: the expiry is checked at this call.
            self.stream = EventStream(
                subscription,
                self.options,
                status=self.status,
                headers=self.raw_headers,
                ends_in=ends_in,
                expires=expires,
            )
        except BaseException:
            subscription.close()
            raise
        self.subscription = subscription
        self.ends_in = ends_in
        self.expires = expires

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the subscription until it ends or the client goes; see the class docs.

        Raises:
            Exception: whatever ``send``/``receive`` raise, except ``OSError`` from
                ``send``, which means the client is gone and ends the stream quietly.
        """
        stream = self.stream
        stream.status = check_status(self.status)  # as they are now, if they were changed
        stream.headers = self.raw_headers
        await stream.serve(scope, receive, send)


def event_stream(
    subscription: Subscription,
    options: StreamOptions | None = None,
    *,
    expires: datetime | None = None,
    **settings: Unpack[StreamSettings],
) -> EventStream:
    """An event-stream body over a subscription, for frameworks that take a streaming body.

    Iterating it yields the opening comment at once, then one ``bytes`` chunk per batch of
    pending events (write each in one send), and a heartbeat comment when no event came
    for ``heartbeat`` seconds. It ends when the subscription ends and after
    ``max_lifetime``; on asyncio, a framework write that has not finished within
    ``send_timeout`` seconds ends it too (the framework's writing task is cancelled). The
    subscription is released on every path, including ``aclose()`` before the first chunk.

    Args:
        subscription: what to stream; the iterator owns it from now on.
        options: a [StreamOptions][sse_channels.asgi.StreamOptions], or its fields as
            keyword ``settings``.
        expires: when the credential behind the stream expires (a timezone-aware
            ``datetime``): it yields a last ``retry:`` chunk then and ends.

    Raises:
        ValueError, TypeError: an option is out of range (at the call, not mid-stream),
            or ``expires`` is not a timezone-aware ``datetime``; the subscription is
            released.
        CredentialExpiredError: ``expires`` is not in the future; the subscription is
            released.
    """
    try:
        return EventStream(subscription, stream_options(options, settings), expires=expires)
    except BaseException:
        subscription.close()
        raise


@final
class StreamResponder(Generic[R]):
    """A framework helper's ``sse_response``, written once for every framework.

    A helper module gives it a ``build`` function that turns a ready
    [EventStream][sse_channels.asgi.EventStream] and its checked header fields into the
    framework's response; everything else (options, status and header checks, releasing
    the subscription when something fails) happens here.

    Args:
        build: ``(stream, header_fields) -> response``; ``stream.status`` is the status.
        one_value_per_header: the framework keeps one value per header name, so a name
            given twice is refused instead of silently losing a value.
    """

    __slots__ = ("_build", "_one_value_per_header")

    def __init__(
        self,
        build: Callable[[EventStream, list[tuple[str, str]]], R],
        *,
        one_value_per_header: bool = False,
    ) -> None:
        self._build = build
        self._one_value_per_header = one_value_per_header

    def __call__(
        self,
        subscription: Subscription,
        options: StreamOptions | None = None,
        *,
        status: int = 200,
        headers: HeaderItems | None = None,
        expires: datetime | None = None,
        **settings: Unpack[StreamSettings],
    ) -> R:
        """A response that streams ``subscription``; return it from a view or handler.

        It carries the [SSE_HEADERS][sse_channels.asgi.SSE_HEADERS] and streams with
        [EventStream][sse_channels.asgi.EventStream]: an opening comment at once, each
        batch of events in one chunk, heartbeats, the write deadline, an end after
        ``max_lifetime``, the subscription released when the client disconnects.

        Args:
            subscription: what to stream; the response owns it from now on and releases
                it when the stream ends, the client disconnects, or the framework drops
                the response unsent.
            options: a [StreamOptions][sse_channels.asgi.StreamOptions], or its fields as
                keyword ``settings`` (``heartbeat=``, ``retry=``, ``send_timeout=``,
                ``max_lifetime=``, ``lifetime_jitter=``, ``observer=``).
            status: the HTTP status.
            headers: extra response headers (``Connection``, ``Content-Length``,
                ``Content-Encoding``... are refused, as for ``EventStreamResponse``).
            expires: when the credential that opened the stream expires (a
                timezone-aware ``datetime``, e.g. a JWT's ``exp``): the stream ends then
                with a ``retry:`` hint, the browser reconnects and is authorised again.

        Raises:
            ValueError, TypeError: an option is out of range, a header is refused, or
                ``expires`` is not a timezone-aware ``datetime``; the subscription is
                released.
            CredentialExpiredError: ``expires`` is not in the future; the subscription is
                released.
            RuntimeError: the framework cannot stream here (e.g. Django outside ASGI).
        """
        try:
            stream = EventStream(
                subscription,
                stream_options(options, settings),
                status=check_status(status),
                expires=expires,
            )
            fields = header_fields(headers, one_per_name=self._one_value_per_header)
            return self._build(stream, fields)
        except BaseException:
            subscription.close()
            raise
