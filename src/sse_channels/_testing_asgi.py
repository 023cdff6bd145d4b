"""An in-process ASGI driver for event streams: no server, no socket, asyncio or trio.

``httpx.ASGITransport`` waits for the whole body, so an endless event stream hangs it. This
driver calls the app with hand-written ``receive``/``send``, decodes the body as it arrives
with [SSEDecoder][sse_channels.SSEDecoder], and can play a client that disconnects or stops
reading.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, final
from urllib.parse import urlencode

import anyio

from ._decode import SSEDecoder

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ._event import Event
    from ._types import ASGIApp, Message, Scope

__all__ = ["SSEStream", "connect_sse"]


@final
class SSEStream:
    """One request to an ASGI app, seen from the client; made by ``connect_sse``.

    Attributes:
        status: the response status.
        raw_headers: the response headers as sent, ``(name, value)`` byte pairs.
        headers: the response headers as a ``dict`` with lower-case ``str`` names
            (repeated headers joined with ``", "``).
        body: every body byte received so far.
        chunks: the non-empty body of each ``http.response.body`` message, in order: one
            per ``send`` the app made.
        events: every event decoded so far (``read_events`` hands them out in order).
        finished: the app sent the end of the response (``more_body`` false).
        app_done: the app has returned (or raised).
    """

    def __init__(self, request_body: bytes = b"") -> None:
        self._request_body = request_body
        self.status: int | None = None
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers: dict[str, str] = {}
        self.body = b""
        self.chunks: list[bytes] = []
        self.events: list[Event] = []
        self.finished = False
        self.app_done = False
        self.error: BaseException | None = None
        self._decoder = SSEDecoder()
        self._disconnect_error: OSError | None = None
        self._read = 0
        self._request_sent = False
        self._gone = anyio.Event()
        self._reading = anyio.Event()
        self._reading.set()
        self._done = anyio.Event()
        self._changed = anyio.Event()

    @property
    def comments(self) -> list[str]:
        """Every comment line received (heartbeats, the opening comment), without the colon."""
        return self._decoder.comments

    @property
    def text(self) -> str:
        """The body received so far, decoded as UTF-8."""
        return self.body.decode("utf-8", "replace")

    @property
    def disconnected(self) -> bool:
        """The client side has gone (``disconnect()`` was called)."""
        return self._gone.is_set()

    async def read_events(self, n: int = 1, *, timeout: float = 5.0) -> list[Event]:
        """Wait for the next ``n`` events not read yet and return them.

        Returns fewer than ``n`` only if the response ended first.

        Raises:
            TimeoutError: fewer than ``n`` arrived within ``timeout`` seconds and the
                response is still open.
        """
        with anyio.fail_after(timeout):
            while len(self.events) - self._read < n and not (self.finished or self.app_done):
                await self._changed.wait()
        events = self.events[self._read : self._read + n]
        self._read += len(events)
        return events

    async def wait_comments(self, n: int, *, timeout: float = 5.0) -> list[str]:
        """Wait until at least ``n`` comment lines have arrived; return all of them.

        Raises:
            TimeoutError: they did not arrive within ``timeout`` seconds.
        """
        with anyio.fail_after(timeout):
            while len(self.comments) < n and not (self.finished or self.app_done):
                await self._changed.wait()
        return self.comments

    async def wait_finished(self, *, timeout: float = 5.0) -> None:
        """Wait until the app has returned.

        Raises:
            TimeoutError: it is still running after ``timeout`` seconds.
        """
        with anyio.fail_after(timeout):
            await self._done.wait()

    def stop_reading(self) -> None:
        """Play a client that stops reading: the app's ``send`` blocks from now on."""
        if self._reading.is_set():  # a send blocked on the current event must stay wakeable
            self._reading = anyio.Event()

    def resume_reading(self) -> None:
        """Let blocked and later ``send`` calls complete again."""
        self._reading.set()

    async def disconnect(self, *, timeout: float = 5.0) -> None:
        """Leave: ``receive`` returns ``http.disconnect``, ``send`` raises ``OSError``.

        Then wait for the app to return.

        Raises:
            TimeoutError: the app was still running ``timeout`` seconds later.
        """
        self._gone.set()
        self._reading.set()
        await self.wait_finished(timeout=timeout)

    # -- the ASGI side -------------------------------------------------------------------

    async def _receive(self) -> Message:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": self._request_body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if not self._gone.is_set():
            await self._reading.wait()
        if self._gone.is_set():
            self._disconnect_error = OSError("the client has disconnected")
            raise self._disconnect_error
        kind = message["type"]
        if kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("http.response.start sent twice")
            self.status = int(message["status"])
            self.raw_headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            for name, value in self.raw_headers:
                key, text = name.decode("latin-1").lower(), value.decode("latin-1")
                self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        elif kind == "http.response.body":
            if self.status is None:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self.finished:
                raise RuntimeError("http.response.body sent after the response ended")
            body = bytes(message.get("body", b""))
            if body:
                self.chunks.append(body)
                self.body += body
                self.events.extend(self._decoder.feed(body))
            if not message.get("more_body", False):
                self.finished = True
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self._receive, self._send)
        except Exception as exc:
            # A send after the client left raises, as on a real server; that is no error of
            # the app's (a server would not report it either), even when a framework wraps it.
            if self._disconnect_error is None or not _comes_from(exc, self._disconnect_error):
                self.error = exc
        finally:
            self.app_done = True
            self._done.set()
            self._notify()


def _comes_from(exc: BaseException, cause: BaseException) -> bool:
    """Whether ``cause`` is ``exc``, or in its cause/context chain or exception groups."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is cause:
            return True
        if id(current) in seen:
            continue
        seen.add(id(current))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        grouped = getattr(current, "exceptions", None)  # an exception group (3.10: backport)
        if isinstance(grouped, tuple):
            pending.extend(e for e in grouped if isinstance(e, BaseException))
    return False


@asynccontextmanager
async def connect_sse(
    app: ASGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    query: str | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes = b"",
    scope: Mapping[str, Any] | None = None,
    timeout: float = 5.0,
) -> AsyncIterator[SSEStream]:
    """Run ``app`` for one request and hand over the response as it streams.

    The context is entered once the app has sent ``http.response.start`` (or returned). On
    exit the client disconnects (if the app is still running) and the app must return
    within ``timeout`` seconds; an exception the app raised is re-raised there.

    Example:
        ```python
        async with connect_sse(app, "/events", query={"last_event_id": "7"}) as stream:
            assert stream.status == 200
            first, second = await stream.read_events(2)
            await stream.disconnect()
        ```

    Args:
        app: any ASGI 3 application.
        path: the request path (``%``-encoded parts are decoded into ``scope["path"]``).
        method: the HTTP method.
        headers: request headers, e.g. ``{"last-event-id": "42"}``; ``host`` is added.
        query: the query string, as text or pairs to encode.
        body: the request body.
        scope: extra scope keys (e.g. ``{"user": ...}``, ``{"state": ...}``).
        timeout: seconds to wait for the response to start and for the app to return.

    Raises:
        TimeoutError: the app sent nothing, or did not return after the disconnect, in time.
        RuntimeError: the app returned without starting a response.
        Exception: whatever the app raised.
    """
    from urllib.parse import unquote

    stream = SSEStream(body)
    raw_path, _, inline_query = path.partition("?")
    if query is None:
        query_string = inline_query
    elif isinstance(query, str):
        query_string = query
    else:
        query_string = urlencode(list(query.items() if isinstance(query, Mapping) else query))
    header_items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    raw_headers = [(b"host", b"testserver")]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in header_items]
    request: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1"),
        "query_string": query_string.encode("latin-1"),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    request.update(scope or {})
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(stream._run, app, request)
            try:
                with anyio.fail_after(timeout):
                    while stream.status is None and not stream.app_done:
                        await stream._changed.wait()
                if stream.status is None:
                    if stream.error is not None:
                        raise stream.error
                    raise RuntimeError("the app returned without starting a response")
                try:
                    yield stream
                except BaseException as exc:
                    # The test already failed (or was cancelled): stop the app, do not wait.
                    stream._gone.set()
                    group.cancel_scope.cancel()
                    if (
                        isinstance(exc, Exception)
                        and stream.error is not None
                        and exc.__cause__ is None
                        and not _comes_from(exc, stream.error)
                    ):
                        # The app failed first (the test saw its response end early): show
                        # its exception as what led to the test's own.
                        exc.__cause__ = stream.error
                    raise
            finally:
                if not stream.app_done and not group.cancel_scope.cancel_called:
                    with anyio.CancelScope(shield=True):
                        try:
                            await stream.disconnect(timeout=timeout)
                        finally:
                            group.cancel_scope.cancel()
    except BaseExceptionGroup as group_error:
        # The test body's own exception comes out of the task group wrapped; unwrap it so
        # that pytest shows the real assertion.
        if len(group_error.exceptions) != 1:
            raise
        unwrapped = group_error.exceptions[0]
    else:
        unwrapped = stream.error  # the app's own exception, raised as it is (even a group)
    if unwrapped is not None:
        # Raised outside the ``except`` block so that its own __cause__ and __context__ stay.
        try:
            raise unwrapped
        finally:
            del unwrapped
