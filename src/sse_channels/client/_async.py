"""EventSource: the reconnecting client for async code, on asyncio or trio (through anyio)."""

from __future__ import annotations

import inspect
from collections import deque
from typing import TYPE_CHECKING, Any, cast, final

import anyio
import httpx

from ._backoff import Backoff
from ._errors import ClientError
from ._session import Session

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
    from types import TracebackType

    from typing_extensions import Self

    from .._event import Event
    from ._gap import Gap
    from ._retry import RetryStrategy
    from ._session import Reconnect
    from ._states import ConnectionState, StateChange

__all__ = ["DEFAULT_TIMEOUT", "EventSource"]

#: Connect, write and pool timeouts of 10 s; a read timeout of 60 s, four times the
#: server's default heartbeat, so that a half-open connection is noticed and replaced.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, read=60.0)

_DEFAULT_BACKOFF = Backoff()


@final
class EventSource:
    """Iterate over a URL's server-sent events, reconnecting by itself; for async code.

    ```python
    async with EventSource("https://example.com/events") as source:
        async for item in source:
            if isinstance(item, Gap):
                await resync(item.channel)
            else:
                handle(item.event, item.data)
    ```

    It yields each [Event][sse_channels.Event] the server sends, and a
    [Gap][sse_channels.client.Gap] for each gap signal, exactly as a browser's
    ``EventSource`` would dispatch them (parsed by [SSEDecoder][sse_channels.SSEDecoder]).
    When the connection drops or the server ends the stream, it waits (see
    [Backoff][sse_channels.client.Backoff]; the server's ``retry:`` and ``Retry-After``
    count) and connects again with ``Last-Event-ID``, so that the server resumes where it
    was. A 204 ends the iteration; a failure the ``retry`` strategy does not retry is raised
    from it (by default [StatusError][sse_channels.client.StatusError] for 401, 403, 404
    and other 4xx but 408 and 429, and
    [ContentTypeError][sse_channels.client.ContentTypeError]). Either way the source is
    closed then.

    Runs on asyncio and trio. One task reads at a time. ``aclose()`` from another task
    ends a read that is waiting, at once. Cancelling a read closes the connection before
    the cancellation goes on; reading again then reconnects at once and resumes.

    Args:
        url: an ``http://`` or ``https://`` URL.
        headers: request headers for every connection (``Accept``, ``Cache-Control`` and
            ``Last-Event-ID`` are the client's own).
        params: query parameters added to the URL.
        last_event_id: resume from this id on the first connection too.
        backoff: the reconnection delays.
        retry: ``(error, attempt) -> bool``, whether to retry after a failure;
            default [default_retry][sse_channels.client.default_retry].
        refresh: called (sync or async) with a [Reconnect][sse_channels.client.Reconnect]
            before each reconnection, to change its headers or query parameters (a
            fresh token); an exception from it is raised from the iteration.
        on_state: called with a [StateChange][sse_channels.client.StateChange] whenever
            the connection state changes, in the reading task.
        client: an ``httpx.AsyncClient`` to use (proxies, TLS, cookies); the source does
            not close it. Default: one of its own, closed by ``aclose()``.
        timeout: the httpx timeout of each request (``None``: no timeout at all).

    Raises:
        TypeError, ValueError: a bad URL, id or option (at the call).
    """

    def __init__(
        self,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        backoff: Backoff = _DEFAULT_BACKOFF,
        retry: RetryStrategy | None = None,
        refresh: Callable[[Reconnect], Awaitable[None] | None] | None = None,
        on_state: Callable[[StateChange], Any] | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
    ) -> None:
        if not isinstance(backoff, Backoff):
            raise TypeError("backoff must be a Backoff")
        if refresh is not None and not callable(refresh):
            raise TypeError("refresh must be callable")
        if client is not None and not isinstance(client, httpx.AsyncClient):
            raise TypeError("client must be an httpx.AsyncClient")
        self._session = Session(
            url,
            headers=headers,
            params=params,
            last_event_id=last_event_id,
            backoff=backoff,
            retry=retry,
            on_state=on_state,
        )
        self._refresh = refresh
        self._client = client
        self._own_client: httpx.AsyncClient | None = None
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._chunks: AsyncGenerator[bytes, None] | None = None
        self._pending: deque[Event | Gap] = deque()
        self._delay: float | None = None
        self._closed = False
        self._busy = False
        self._scope: anyio.CancelScope | None = None
        self._idle: anyio.Event | None = None

    @property
    def state(self) -> ConnectionState:
        """The connection state now."""
        return self._session.state

    @property
    def last_event_id(self) -> str:
        """The id the next connection sends as ``Last-Event-ID`` (``""``: none yet)."""
        return self._session.last_event_id

    @property
    def retry(self) -> int | None:
        """The server's latest ``retry:``, in milliseconds, or ``None``."""
        return self._session.retry_ms

    @property
    def connections(self) -> int:
        """How many times the server has answered with an event stream so far."""
        return self._session.connections

    @property
    def closed(self) -> bool:
        """``True`` once the source is closed (``aclose()``, a 204 or an error)."""
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event | Gap:
        """The next event or gap, connecting and reconnecting as needed.

        Raises:
            StopAsyncIteration: the source is closed, or the server answered 204.
            StatusError, ContentTypeError, httpx.HTTPError: a failure that is not retried.
            RuntimeError: another task is reading this source.
        """
        if self._busy:
            raise RuntimeError("another task is already reading this EventSource")
        self._busy = True
        self._idle = anyio.Event()
        try:
            while True:
                if self._closed:
                    raise StopAsyncIteration
                if self._pending:
                    return self._pending.popleft()
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    await self._step()
                self._scope = None
        except BaseException as exc:
            # Whatever ends this read, no connection is left open behind it.
            await self._disconnect()
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                self._session.interrupted()
            elif not isinstance(exc, StopAsyncIteration):
                self._closed = True
                self._session.close(exc)
            raise
        finally:
            self._scope = None
            self._busy = False
            self._idle.set()

    async def aclose(self) -> None:
        """Close the connection and end the iteration; idempotent.

        A read waiting in another task ends at once with ``StopAsyncIteration``; this
        returns once its connection is closed. Cancelling ``aclose()`` does not stop it
        from closing.
        """
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        with anyio.CancelScope(shield=True):
            if self._busy and self._idle is not None:
                await self._idle.wait()
            await self._disconnect()
            if self._own_client is not None:
                client, self._own_client = self._own_client, None
                await client.aclose()
        self._pending.clear()
        self._session.close()

    # -- one step of the reading loop -----------------------------------------------

    async def _step(self) -> None:
        if self._chunks is None:
            await self._connect()
            return
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            await self._disconnect()
            self._delay = self._session.ended()
            return
        except httpx.HTTPError as error:
            await self._disconnect()
            self._delay = self._session.failed(error)
            return
        self._pending.extend(self._session.feed(chunk))

    async def _connect(self) -> None:
        session = self._session
        if self._delay is not None:
            await anyio.sleep(self._delay)
            self._delay = None
            if self._refresh is not None:
                result = self._refresh(session.reconnect())
                if inspect.isawaitable(result):
                    await result
        session.starting()
        client = self._client
        if client is None:
            if self._own_client is None:
                self._own_client = httpx.AsyncClient()
            client = self._own_client
        request = session.build_request(client, self._timeout)
        try:
            response = await client.send(request, stream=True, follow_redirects=True)
        except httpx.HTTPError as error:
            self._delay = session.failed(error)
            return
        try:
            readable = session.response(response.status_code, response.headers)
        except ClientError as error:
            await response.aclose()
            self._delay = session.failed(error)
            return
        except BaseException:
            await response.aclose()
            raise
        if not readable:
            await response.aclose()
            self._closed = True
            session.close()
            return
        self._response = response
        self._chunks = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())

    async def _disconnect(self) -> None:
        chunks, response = self._chunks, self._response
        self._chunks = self._response = None
        # Shielded: a connection is closed all the way, even by a task being cancelled.
        with anyio.CancelScope(shield=True):
            if response is not None:
                await response.aclose()
            if chunks is not None:
                # httpx reads through a chain of async generators, and closing the outer
                # one leaves the inner ones suspended (trio warns when they are collected).
                # With the response closed, reading on makes every one of them finish.
                while True:
                    try:
                        await chunks.__anext__()
                    except Exception:
                        break
                await chunks.aclose()
