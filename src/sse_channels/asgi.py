"""Stream subscriptions as ``text/event-stream`` from any ASGI server or framework.

Three layers, each usable alone, none depending on anything but ASGI and this package:

- [event_stream][sse_channels.asgi.event_stream]: an async iterator of body chunks over a
  subscription, for frameworks that take a streaming body (Django, Litestar, Quart).
- [EventStreamResponse][sse_channels.asgi.EventStreamResponse]: an ASGI app that streams
  one subscription: headers and a first comment at once, heartbeats, a write deadline,
  disconnect detection, an optional maximum lifetime.
- [SSEApp][sse_channels.asgi.SSEApp]: a mountable ASGI app built from a store: it resolves
  the request's channels, asks an ``authorize`` hook, resumes from ``Last-Event-ID``.

[close_on_signal][sse_channels.asgi.close_on_signal] closes a store when the server is told
to stop, so that open streams end and the server can drain.

Every path releases the subscription in ``finally``: the client leaving before the first
event or in the middle of a write, a client that stops reading (write deadline), the
subscription being revoked, the store being closed, an exception in the app.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import signal
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast, final
from urllib.parse import parse_qsl

import anyio

from ._encode import format_sse
from ._exceptions import SlowConsumerError, StoreClosedError
from ._types import Scope

if TYPE_CHECKING:
    from types import FrameType

    from ._event import Event
    from ._store import ChannelStore
    from ._subscription import Subscription
    from ._types import Message, Receive, Send

__all__ = [
    "HEARTBEAT",
    "SSE_HEADERS",
    "EventStreamBody",
    "EventStreamResponse",
    "SSEApp",
    "close_on_signal",
    "event_stream",
    "last_event_id",
    "opening_comment",
    "plain_response",
    "raw_headers",
]

#: The response headers of an event stream. No ``Connection`` header (forbidden on HTTP/2;
#: the server manages keep-alive) and no ``Content-Encoding``: an event stream is never
#: compressed, since a compressor holds bytes back until it has enough to squeeze.
SSE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
    }
)

#: The comment written when a stream has been idle for ``heartbeat`` seconds.
HEARTBEAT = b": ping\n\n"

# Headers a caller may not add: they would break streaming or contradict the above.
_FORBIDDEN_HEADERS = frozenset(
    {"connection", "content-length", "transfer-encoding", "content-encoding", "keep-alive"}
)

_Channels = Iterable[str] | str | None
_ChannelsResolver = Callable[[Scope], _Channels | Awaitable[_Channels]]
_Authorizer = Callable[[Scope, list[str]], bool | int | Awaitable[bool | int | None] | None]
_KeyResolver = Callable[[Scope], str | Awaitable[str | None] | None]


def opening_comment(retry: int | None = None) -> bytes:
    """The first bytes of a stream: a comment (and ``retry:`` if given), sent at once.

    Sent before any event so that GZip-style middleware and proxies pass the response on
    instead of holding it until the first event.

    Raises:
        ValueError, TypeError: ``retry`` is not a non-negative ``int``.
    """
    return format_sse(comment="ok", retry=retry)


def event_stream(
    subscription: Subscription,
    *,
    heartbeat: float | None = 15.0,
    retry: int | None = None,
    max_lifetime: float | None = None,
    lifetime_jitter: float = 0.1,
) -> EventStreamBody:
    """An event-stream body over a subscription, for frameworks that take a streaming body.

    Yields the opening comment at once, then one ``bytes`` chunk per batch of pending
    events (everything pending, joined: write each chunk in one send), and a comment
    heartbeat whenever no chunk was asked for during ``heartbeat`` seconds. Heartbeats
    come only between batches, so an event is never split.

    It ends when the subscription ends (closed, revoked, store closed, or a slow consumer
    disconnected: the client then reconnects and resumes) and after ``max_lifetime``.
    The subscription is closed in ``finally`` on every path: end of stream, the iterator
    closed (``aclose()``, even before the first chunk), cancellation, an exception.

    Args:
        subscription: what to stream; the iterator owns it from now on.
        heartbeat: seconds of silence before a comment is written; ``None``: never.
        retry: an initial ``retry:`` (reconnection delay in ms) for the browser.
        max_lifetime: end the stream after about this many seconds (the browser
            reconnects and resumes), so that clients move over to new servers gradually.
        lifetime_jitter: spread ``max_lifetime`` by up to this fraction either way, so
            that clients connected together do not all reconnect together.

    Raises:
        ValueError, TypeError: an option is out of range (at the call, not mid-stream).

    Cancelling the consumer while it awaits the next chunk ends the stream and closes the
    subscription.
    """
    opening = _check_options(heartbeat, retry, 1.0, max_lifetime, lifetime_jitter)
    body = _body(subscription, opening, heartbeat, _lifetime(max_lifetime, lifetime_jitter))
    return EventStreamBody(subscription, body)


@final
class EventStreamBody:
    """The async iterator ``event_stream()`` returns.

    Unlike a bare async generator, its ``aclose()`` releases the subscription even when
    the framework drops the response before reading the first chunk (a generator that
    never started cannot run its ``finally``).
    """

    __slots__ = ("_body", "_subscription")

    def __init__(self, subscription: Subscription, body: AsyncGenerator[bytes, None]) -> None:
        self._subscription = subscription
        self._body = body

    def __aiter__(self) -> EventStreamBody:
        return self

    async def __anext__(self) -> bytes:
        return await self._body.__anext__()

    async def aclose(self) -> None:
        """Stop streaming and release the subscription; idempotent."""
        self._subscription.close()
        await self._body.aclose()


async def _body(
    subscription: Subscription, opening: bytes, heartbeat: float | None, lifetime: float | None
) -> AsyncGenerator[bytes, None]:
    try:
        deadline = None if lifetime is None else time.monotonic() + lifetime
        yield opening
        while True:
            wait = heartbeat
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait = left if wait is None else min(wait, left)
            batch: list[Event] | None = None
            if wait is None:
                batch = await subscription.receive_batch()
            else:
                # The scope is left before yielding: a yield inside it would cancel the
                # consumer's own code.
                with anyio.move_on_after(wait):
                    batch = await subscription.receive_batch()
            if batch is None:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                yield HEARTBEAT
            elif batch:
                yield batch[0].encoded if len(batch) == 1 else b"".join(e.encoded for e in batch)
            else:
                return
    except SlowConsumerError:
        return  # the client reconnects with Last-Event-ID and resumes or gets a gap
    finally:
        subscription.close()


@final
class EventStreamResponse:
    """An ASGI app that streams one subscription as a ``text/event-stream`` response.

    Called as ``await response(scope, receive, send)``, it sends the status, the
    [SSE_HEADERS][sse_channels.asgi.SSE_HEADERS] (plus ``headers``) and an opening comment
    at once, then each batch of pending events in one ``send``; a comment heartbeat after
    ``heartbeat`` idle seconds. Meanwhile it listens for ``http.disconnect``: whichever
    finishes first, the writer or the listener, cancels the other.

    It ends the response normally when the subscription ends (revoked, store closed,
    slow consumer) or ``max_lifetime`` has passed; it stops at once, without finishing
    the response, when the client disconnects, when ``send`` raises ``OSError``, or when
    one ``send`` has not completed within ``send_timeout`` seconds (a client that stopped
    reading, a half-open connection). The subscription is closed in ``finally`` on every
    path, including exceptions and cancellation. A ``HEAD`` request (Starlette routes
    answer HEAD for GET) gets the headers alone, and the subscription is closed at once.

    Args:
        subscription: what to stream; the response owns it from now on.
        heartbeat: seconds of silence before a comment is written; ``None``: never.
        retry: an initial ``retry:`` (reconnection delay in ms) for the browser.
        send_timeout: seconds one write may take before the client is given up on;
            ``None``: wait forever (not recommended behind the open internet).
        max_lifetime: end the response after about this many seconds; the browser
            reconnects and resumes (e.g. on another server).
        lifetime_jitter: spread ``max_lifetime`` by up to this fraction either way.
        status: the HTTP status.
        headers: extra response headers; one named like an SSE header replaces it.
            ``Connection``, ``Content-Length``, ``Transfer-Encoding``, ``Keep-Alive`` and
            ``Content-Encoding`` are refused.

    Raises:
        ValueError, TypeError: an option is out of range or a header is refused.
    """

    __slots__ = (
        "heartbeat",
        "lifetime",
        "opening",
        "raw_headers",
        "send_timeout",
        "status",
        "subscription",
    )

    def __init__(
        self,
        subscription: Subscription,
        *,
        heartbeat: float | None = 15.0,
        retry: int | None = None,
        send_timeout: float | None = 30.0,
        max_lifetime: float | None = None,
        lifetime_jitter: float = 0.1,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.opening = _check_options(heartbeat, retry, send_timeout, max_lifetime, lifetime_jitter)
        if type(status) is not int or not 100 <= status <= 599:
            raise ValueError(f"status must be an int HTTP status, not {status!r}")
        self.subscription = subscription
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.lifetime = _lifetime(max_lifetime, lifetime_jitter)
        self.status = status
        self.raw_headers = raw_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the subscription until it ends or the client goes; see the class docs.

        Raises:
            Exception: whatever ``send``/``receive`` raise, except ``OSError`` from
                ``send``, which means the client is gone and ends the stream quietly.
        """
        if scope.get("method") == "HEAD":
            # The headers alone: a HEAD response has no body, so streaming one would leave
            # the connection (and the subscription) busy with nothing the client reads.
            self.subscription.close()
            start = {"type": "http.response.start", "status": self.status}
            await send({**start, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await _Stream(self, send).run(receive)


class _Stream:
    """The state of one streaming response: a writer, a disconnect listener, a watchdog.

    The writer waits for batches without a timeout of its own (a cancel scope per batch
    costs more than the write): the watchdog wakes once per heartbeat interval and
    interrupts a waiting writer for a heartbeat or the end of its lifetime, or cancels
    everything when a single send has been blocked for longer than ``send_timeout``.
    """

    __slots__ = (
        "ends",
        "error",
        "expired",
        "group",
        "heartbeat_due",
        "idle",
        "last_write",
        "response",
        "send",
        "sending_since",
        "timed_out",
        "waiting",
    )

    def __init__(self, response: EventStreamResponse, send: Send) -> None:
        self.response = response
        self.send = send
        self.group: anyio.CancelScope | None = None
        self.idle: anyio.CancelScope | None = None
        self.waiting = False
        self.expired = False
        self.heartbeat_due = False
        self.timed_out = False
        self.error: Exception | None = None
        self.sending_since: float | None = None
        self.last_write = time.monotonic()
        lifetime = response.lifetime
        self.ends = None if lifetime is None else self.last_write + lifetime

    async def run(self, receive: Receive) -> None:
        try:
            async with anyio.create_task_group() as group:
                self.group = group.cancel_scope
                group.start_soon(self._listen, receive)
                group.start_soon(self._watchdog)
                try:
                    await self._write()
                except OSError:
                    pass  # the client is gone: ASGI 2.4 servers raise it from send()
                except Exception as exc:
                    # Raised after the task group, so the server sees the error itself and
                    # not an ExceptionGroup around it.
                    self.error = exc
                group.cancel_scope.cancel()
        finally:
            self.response.subscription.close()
        if self.error is not None:
            try:
                raise self.error
            finally:
                self.error = None

    async def _listen(self, receive: Receive) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
        except Exception as exc:
            self.error = exc
        assert self.group is not None
        self.group.cancel()

    async def _write(self) -> None:
        response = self.response
        subscription = response.subscription
        start: Message = {
            "type": "http.response.start",
            "status": response.status,
            "headers": response.raw_headers,
        }
        await self._send(start)
        await self._send_body(response.opening)
        while not self._expired():  # it may end while a comment or heartbeat is sent
            batch: list[Event] | None = None
            with anyio.CancelScope() as idle:
                self.idle = idle
                while True:
                    self.waiting = True
                    try:
                        batch = await subscription.receive_batch()
                    except SlowConsumerError:
                        batch = []  # end normally: the client resumes from its last id
                    self.waiting = False
                    if not batch or idle.cancel_called:
                        break  # a batch that raced the watchdog is written outside the scope
                    await self._send_body(
                        batch[0].encoded if len(batch) == 1 else b"".join(e.encoded for e in batch)
                    )
                    batch = None
                    if self.expired:
                        break
            self.waiting = False
            self.idle = None
            if batch:
                await self._send_body(
                    batch[0].encoded if len(batch) == 1 else b"".join(e.encoded for e in batch)
                )
            elif batch is not None:
                break  # the subscription ended
            if self.expired:
                break
            if self.heartbeat_due:
                self.heartbeat_due = False
                await self._send_body(HEARTBEAT)
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def _expired(self) -> bool:
        # A call, not an attribute test: the watchdog sets the flag while we await.
        return self.expired

    async def _send(self, message: Message) -> None:
        self.sending_since = started = time.monotonic()
        await self.send(message)
        self.sending_since = None
        self.last_write = started

    async def _send_body(self, body: bytes) -> None:
        self.sending_since = started = time.monotonic()
        await self.send({"type": "http.response.body", "body": body, "more_body": True})
        self.sending_since = None
        self.last_write = started

    def _interrupt(self) -> None:
        # Only a writer waiting for events is interrupted; one in send() is never cancelled
        # by this, so a write is never cut in half.
        if self.waiting and self.idle is not None:
            self.idle.cancel()

    async def _watchdog(self) -> None:
        heartbeat = self.response.heartbeat
        send_timeout = self.response.send_timeout
        while True:
            now = time.monotonic()
            wake = math.inf
            since = self.sending_since
            if send_timeout is not None:
                if since is None:
                    # A send starting after this check is seen at the next one, which is
                    # early enough to catch it exactly send_timeout after it started.
                    wake = now + send_timeout
                elif now - since >= send_timeout:
                    self.timed_out = True
                    # Released now, even if the server shields its socket write from
                    # cancellation (hypercorn does) and send() stays blocked.
                    self.response.subscription.close()
                    assert self.group is not None
                    self.group.cancel()
                    return
                else:
                    wake = since + send_timeout
            if self.ends is not None:
                if now >= self.ends:
                    self.ends = None
                    self.expired = True
                    self._interrupt()
                else:
                    wake = min(wake, self.ends)
            if heartbeat is not None:
                due = self.last_write + heartbeat
                if now >= due:
                    if self.waiting:
                        self.heartbeat_due = True
                        self._interrupt()
                    due = now + heartbeat
                wake = min(wake, due)
            if wake == math.inf:
                return
            await anyio.sleep(max(wake - now, 0.0))


@final
class SSEApp:
    """A mountable ASGI app that streams channels of a store to ``EventSource`` clients.

    For each ``GET`` request it resolves the channels (``channels(scope)``), asks
    ``authorize(scope, channels)`` before anything is streamed, subscribes with the key
    from ``key(scope)`` and the request's last event id, and streams with
    [EventStreamResponse][sse_channels.asgi.EventStreamResponse]. The last event id comes
    from the ``Last-Event-ID`` header or, because ``EventSource`` cannot set headers on
    its first connection, from a ``last_event_id`` query parameter.

    Responses other than a stream have a short ``text/plain`` body: 405 for a method other
    than ``GET``; 404 when the resolver returns no channel; 400 when a channel name is
    invalid; 403 (or the status ``authorize`` returns) when refused; 503 once the store is
    closed. Mounted as the top-level app it answers the lifespan protocol: it starts the
    store at startup (``async with store``, which a Redis-backed store needs) and closes it
    at shutdown. WebSocket connections are refused.

    Args:
        store: the store to subscribe to.
        channels: the channels of a request: a fixed ``str`` or list of names, or a
            callable ``(scope) -> str | list[str] | None``, sync or async. Names with ``*``
            are patterns: never pass client input through unchecked.
        authorize: ``(scope, channels) -> bool | int | None``, sync or async, called
            before anything is sent. ``True`` allows; ``False`` or ``None`` refuses with
            403; an ``int`` refuses with that status, e.g. 401, or 204, which tells the
            browser to stop reconnecting. ``None`` (the default hook): everyone may read.
        key: ``(scope) -> str | None``, sync or async: the subscription's key, e.g. the
            user id, so that ``store.revoke(key=...)`` ends that user's streams.
        heartbeat: as for [EventStreamResponse][sse_channels.asgi.EventStreamResponse].
        retry: as for ``EventStreamResponse``.
        send_timeout: as for ``EventStreamResponse``.
        max_lifetime: as for ``EventStreamResponse``.
        lifetime_jitter: as for ``EventStreamResponse``.
        headers: as for ``EventStreamResponse``.

    Raises:
        ValueError, TypeError: an option is out of range or a header is refused.
    """

    def __init__(
        self,
        store: ChannelStore,
        channels: str | Iterable[str] | _ChannelsResolver,
        *,
        authorize: _Authorizer | None = None,
        key: _KeyResolver | None = None,
        heartbeat: float | None = 15.0,
        retry: int | None = None,
        send_timeout: float | None = 30.0,
        max_lifetime: float | None = None,
        lifetime_jitter: float = 0.1,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        _check_options(heartbeat, retry, send_timeout, max_lifetime, lifetime_jitter)
        raw_headers(headers)
        if isinstance(channels, str):
            fixed: list[str] | None = [channels]
        elif callable(channels):
            fixed = None
        else:
            fixed = list(channels)
            if not fixed or not all(isinstance(name, str) for name in fixed):
                raise TypeError("channels must be a str, a non-empty list of str, or a callable")
        if authorize is not None and not callable(authorize):
            raise TypeError("authorize must be callable")
        if key is not None and not callable(key):
            raise TypeError("key must be callable")
        self.store = store
        self._fixed = fixed
        self._resolve = None if fixed is not None else cast("_ChannelsResolver", channels)
        self._authorize = authorize
        self._key = key
        self._options: dict[str, Any] = {
            "heartbeat": heartbeat,
            "retry": retry,
            "send_timeout": send_timeout,
            "max_lifetime": max_lifetime,
            "lifetime_jitter": lifetime_jitter,
            "headers": None
            if headers is None
            else list(headers.items() if isinstance(headers, Mapping) else headers),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect; closing before accepting answers 403
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"SSEApp cannot serve ASGI scope type {kind!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method", "GET") != "GET":
            await plain_response(send, 405, headers=[(b"allow", b"GET")])
            return
        if self._fixed is not None:
            names = self._fixed
        else:
            assert self._resolve is not None
            found = await _call(self._resolve, scope)
            names = [found] if isinstance(found, str) else list(found or ())
        if not names:
            await plain_response(send, 404)
            return
        if self._authorize is not None:
            verdict = await _call(self._authorize, scope, names)
            if verdict is not True:
                await plain_response(send, _refusal_status(verdict))
                return
        key = None if self._key is None else await _call(self._key, scope)
        try:
            subscription = self.store.subscribe(*names, last_event_id=last_event_id(scope), key=key)
        except StoreClosedError:
            await plain_response(send, 503, headers=[(b"retry-after", b"5")])
            return
        except ValueError:
            await plain_response(send, 400)
            return
        try:
            response = EventStreamResponse(subscription, **self._options)
        except BaseException:
            subscription.close()
            raise
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # The store runs for the app's lifetime: a backend with background work (the Redis
        # reader) starts here, and leaving the block closes the store, ending every stream.
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        started = False
        try:
            async with self.store:
                await send({"type": "lifespan.startup.complete"})
                started = True
                while (await receive())["type"] != "lifespan.shutdown":
                    pass
        except Exception as exc:
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": f"{type(exc).__name__}: {exc}"})
            return
        await send({"type": "lifespan.shutdown.complete"})


@asynccontextmanager
async def close_on_signal(
    store: ChannelStore,
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
) -> AsyncIterator[None]:
    """Close ``store`` as soon as the process is told to stop; use it in the lifespan.

    Servers (uvicorn, hypercorn) wait for open responses to finish *before* they run the
    lifespan's shutdown, so an endless stream would hold them up (or be cancelled after a
    grace period). Inside this context the signal handlers already installed for
    ``signals`` (the server's) are chained: on a signal the store is closed, which ends
    every stream cleanly, and the server's own handler runs as before. No server code is
    patched; when the context exits, the previous handlers are restored.

    It does nothing outside the main thread (only the main thread receives signals) or for
    a signal that has no Python handler to chain to. Stopping a server programmatically
    (``server.should_exit = True``)? Call ``await store.aclose()`` first.

    Example:
        ```python
        @asynccontextmanager
        async def lifespan(app):
            async with store, close_on_signal(store):
                yield
        ```
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = anyio.Event()
    call_soon, forward = _signal_helpers()
    chained: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        call_soon(received.set)
        previous = chained.get(signum)
        if previous is not None:
            forward(previous, signum, frame)

    for signum in signals:
        current = signal.getsignal(signum)
        if callable(current):
            chained[signum] = current
            signal.signal(signum, handler)

    async def close_when_signalled() -> None:
        await received.wait()
        await store.aclose()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(close_when_signalled)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
    finally:
        for signum, previous in chained.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)


# -- helpers shared with the framework modules ----------------------------------------------


def raw_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> list[tuple[bytes, bytes]]:
    """``SSE_HEADERS`` plus ``headers`` as ASGI raw headers (lower-case names, latin-1).

    Raises:
        ValueError: a refused header (see ``EventStreamResponse``), or CR/LF in one.
        TypeError: a name or value is not ``str``.
    """
    merged = dict(SSE_HEADERS)
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    extra: list[tuple[str, str]] = []
    for name, value in items:
        if type(name) is not str or type(value) is not str:
            raise TypeError("header names and values must be str")
        lower = name.lower()
        if lower in _FORBIDDEN_HEADERS:
            raise ValueError(f"an event stream must not set the {name!r} header")
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(f"invalid header: {name!r}: {value!r}")
        if lower in merged:
            merged[lower] = value
        else:
            extra.append((lower, value))
    return [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in [*merged.items(), *extra]
    ]


def _single_valued(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """``raw`` as ``str`` pairs, for frameworks whose responses keep one value per name.

    Raises:
        ValueError: a name repeats (Django and Litestar would silently keep only the last).
    """
    fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
    names = [name for name, _ in fields]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(
                f"header {name!r} is given more than once; this framework keeps one value "
                "per header (set cookies on the response with its own API)"
            )
    return fields


def last_event_id(scope: Scope) -> str | None:
    """The request's last event id: the ``Last-Event-ID`` header, else ``?last_event_id=``.

    Returns ``None`` when neither is present or the value is empty.
    """
    for name, value in scope.get("headers", ()):
        if name.lower() == b"last-event-id" and value:
            return bytes(value).decode("latin-1")
    query = scope.get("query_string", b"")
    if query and b"last_event_id" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if name == "last_event_id" and value:
                return str(value)
    return None


async def plain_response(
    send: Send, status: int, *, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete short ``text/plain`` response (no body for 204 and 304)."""
    if status in (204, 304):
        head = [(b"cache-control", b"no-store"), *headers]
        body = b""
    else:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        body = f"{status} {phrase}".rstrip().encode() + b"\n"
        head = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *headers,
        ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _refusal_status(verdict: object) -> int:
    if verdict is False or verdict is None:
        return 403
    if type(verdict) is int and (verdict == 204 or 400 <= verdict <= 599):
        return verdict
    raise TypeError(
        f"authorize must return True, False, None or a refusal status (204, 4xx, 5xx), "
        f"not {verdict!r}"
    )


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _check_options(
    heartbeat: float | None,
    retry: int | None,
    send_timeout: float | None,
    max_lifetime: float | None,
    lifetime_jitter: float,
) -> bytes:
    for name, value in (
        ("heartbeat", heartbeat),
        ("send_timeout", send_timeout),
        ("max_lifetime", max_lifetime),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
        if not 0 < value < math.inf:
            raise ValueError(f"{name} must be positive seconds or None, not {value!r}")
    if isinstance(lifetime_jitter, bool) or not isinstance(lifetime_jitter, (int, float)):
        raise TypeError(f"lifetime_jitter must be a number, not {lifetime_jitter!r}")
    if not 0 <= lifetime_jitter < 1:
        raise ValueError(f"lifetime_jitter must be in [0, 1), not {lifetime_jitter!r}")
    return opening_comment(retry)


def _lifetime(max_lifetime: float | None, jitter: float) -> float | None:
    if max_lifetime is None:
        return None
    return max_lifetime * (1 + random.uniform(-jitter, jitter))


_Handler = Callable[[int, "FrameType | None"], Any]


def _signal_helpers() -> tuple[
    Callable[[Callable[[], object]], object],
    Callable[[_Handler, int, FrameType | None], None],
]:
    """How to run a callback in this event loop from a signal, and to pass a signal on."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio

        @trio.lowlevel.enable_ki_protection
        def forward(previous: _Handler, signum: int, frame: FrameType | None) -> None:
            # Passed on from a KI-protected frame, trio's SIGINT handler raises
            # KeyboardInterrupt at a checkpoint of the main task, as it does when the signal
            # interrupts trio itself, instead of inside whatever code was running (e.g. the
            # server's socket write of a stream's last bytes).
            previous(signum, sys._getframe())

        return trio.lowlevel.current_trio_token().run_sync_soon, forward

    def forward_as_is(previous: _Handler, signum: int, frame: FrameType | None) -> None:
        previous(signum, frame)

    return loop.call_soon_threadsafe, forward_as_is
