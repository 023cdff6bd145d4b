"""SSEApp: a mountable ASGI app that streams the channels of a store."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast, final

from typing_extensions import Unpack

from .._exceptions import CredentialExpiredError, StoreClosedError
from ._engine import EventStream
from ._expiry import seconds_left
from ._http import last_event_id, plain_response, raw_headers
from ._options import StreamOptions, StreamSettings, stream_options
from ._signals import close_on_signal

if TYPE_CHECKING:
    from .._store import ChannelStore
    from .._types import Receive, Scope, Send
    from ._http import HeaderItems

__all__ = ["SSEApp"]

_Channels = Iterable[str] | str | None
_ChannelsResolver = Callable[["Scope"], _Channels | Awaitable[_Channels]]
_Verdict = bool | int | datetime | None
_Authorizer = Callable[["Scope", list[str]], _Verdict | Awaitable[_Verdict]]
_KeyResolver = Callable[["Scope"], str | Awaitable[str | None] | None]


@final
class SSEApp:
    """A mountable ASGI app that streams channels of a store to ``EventSource`` clients.

    For each ``GET`` request it resolves the channels (``channels(scope)``), asks
    ``authorize(scope, channels)`` before anything is streamed, subscribes with the key
    from ``key(scope)`` and the request's last event id, and streams with
    [EventStream][sse_channels.asgi.EventStream]. The last event id comes from the
    ``Last-Event-ID`` header or, because ``EventSource`` cannot set headers on its first
    connection, from a ``last_event_id`` query parameter. A ``HEAD`` request is resolved
    and authorised the same way and answered with the stream's status and headers, no
    body and no subscription (uptime checks use it).

    Responses other than a stream have a short ``text/plain`` body: 405 for a method other
    than ``GET`` or ``HEAD``; 404 when the resolver returns no channel; 400 when a channel
    name is invalid, or is a pattern (``*``) that came from a callable resolver without
    ``patterns=True``; 403 (or the status ``authorize`` returns) when refused; 503 once
    the store is closed. Mounted as the top-level app it answers the lifespan protocol: it
    starts the store at startup (``async with store``, which a Redis-backed store needs),
    closes it as soon as the server is told to stop (``close_on_signal``: every stream
    ends cleanly, so the server can drain) and at shutdown. With the ``presence=`` option it
    runs the presence inside the store, and closes it first (its members' leaves are
    announced before the store stops). WebSocket connections are
    refused.

    Args:
        store: the store to subscribe to.
        channels: the channels of a request: a fixed ``str`` or list of names (patterns
            allowed), or a callable ``(scope) -> str | list[str] | None``, sync or async.
        authorize: ``(scope, channels) -> bool | datetime | int | None``, sync or async,
            called before anything is sent. ``True`` allows; a timezone-aware
            ``datetime`` allows until then, when the credential expires (a JWT's
            ``exp``): the stream ends at that time with a ``retry:`` hint and the
            subscription's ``close_reason`` is ``"expired"``, so the browser reconnects
            and is authorised again; one already past refuses with 401. ``False`` or
            ``None`` refuses with 403; an ``int`` refuses with that status, e.g. 401, or
            204, which tells the browser to stop reconnecting. ``None`` (the default
            hook): everyone may read.
        key: ``(scope) -> str | None``, sync or async: the subscription's key, e.g. the
            user id, so that ``store.revoke(key=...)`` ends that user's streams.
        patterns: let a callable resolver return patterns (names with ``*``). Off by
            default: a resolver that passes a path parameter through would otherwise let
            a client ask for ``*`` and read every channel.
        options: a [StreamOptions][sse_channels.asgi.StreamOptions], or its fields as
            keyword ``settings``.
        headers: extra response headers, as for
            [EventStreamResponse][sse_channels.asgi.EventStreamResponse].

    Raises:
        ValueError, TypeError: an option is out of range or a header is refused. (When
            a request is served: ``TypeError`` or ``ValueError`` if ``authorize`` returns
            something else, or a naive ``datetime``.)
    """

    __slots__ = (
        "_authorize",
        "_fixed",
        "_key",
        "_options",
        "_patterns",
        "_raw_headers",
        "_resolve",
        "store",
    )

    def __init__(
        self,
        store: ChannelStore,
        channels: str | Iterable[str] | _ChannelsResolver,
        *,
        authorize: _Authorizer | None = None,
        key: _KeyResolver | None = None,
        patterns: bool = False,
        options: StreamOptions | None = None,
        headers: HeaderItems | None = None,
        **settings: Unpack[StreamSettings],
    ) -> None:
        self._options = stream_options(options, settings)
        self._raw_headers = tuple(raw_headers(headers))
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
        if type(patterns) is not bool:
            raise TypeError(f"patterns must be True or False, not {patterns!r}")
        self.store = store
        self._fixed = fixed
        self._resolve = None if fixed is not None else cast("_ChannelsResolver", channels)
        self._authorize = authorize
        self._key = key
        self._patterns = patterns

    @property
    def options(self) -> StreamOptions:
        """How its streams behave."""
        return self._options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            await self._not_http(kind, receive, send)
            return
        # The request, inline: a parked stream's memory is mostly its coroutine frames.
        method = scope.get("method", "GET")
        if method != "GET" and method != "HEAD":
            await plain_response(send, 405, headers=[(b"allow", b"GET, HEAD")])
            return
        if self._fixed is not None:
            names = self._fixed
        else:
            assert self._resolve is not None
            found = await _call(self._resolve, scope)
            names = [found] if isinstance(found, str) else list(found or ())
            if not self._patterns and any(isinstance(n, str) and "*" in n for n in names):
                # Client input must never widen into a pattern: /events/* would read every
                # channel, other users' private ones included.
                await plain_response(send, 400)
                return
        if not names:
            await plain_response(send, 404)
            return
        expires: datetime | None = None
        if self._authorize is not None:
            verdict = await _call(self._authorize, scope, names)
            if verdict is not True:
                if not isinstance(verdict, datetime):
                    await plain_response(send, _refusal_status(verdict))
                    return
                try:
                    seconds_left(verdict)
                except CredentialExpiredError:
                    await plain_response(send, 401)
                    return
                expires = verdict
        if method == "HEAD":
            # What a GET would start with, minus the body: nothing is subscribed.
            await send({"type": "http.response.start", "status": 200, "headers": self._raw_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
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
            stream = EventStream(
                subscription, self._options, headers=self._raw_headers, expires=expires
            )
        except CredentialExpiredError:
            # It expired while the key resolved: refused, as it would be a moment later.
            subscription.close()
            await plain_response(send, 401)
            return
        await stream.serve(scope, receive, send)

    async def _not_http(self, kind: str, receive: Receive, send: Send) -> None:
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect; closing before accepting answers 403
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"SSEApp cannot serve ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # The store runs for the app's lifetime: a backend with background work (the Redis
        # reader) starts here. Servers drain open responses before they run the shutdown,
        # so the store is also closed on the stop signal, which ends every stream cleanly.
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        started = False
        presence = self._options.presence
        first = () if presence is None else (presence,)
        try:
            async with (
                self.store,
                presence if presence is not None else _nothing(),
                close_on_signal(self.store, first=first),
            ):
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
async def _nothing() -> AsyncIterator[None]:
    yield


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
