"""SyncEventSource: the reconnecting client for threads and plain scripts."""

from __future__ import annotations

import contextlib
import inspect
import socket
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, cast, final

import httpx

from ._async import DEFAULT_TIMEOUT
from ._backoff import Backoff
from ._errors import ClientError
from ._session import Session

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from types import TracebackType

    from typing_extensions import Self

    from .._event import Event
    from ._gap import Gap
    from ._retry import RetryStrategy
    from ._session import Reconnect
    from ._states import ConnectionState, StateChange

__all__ = ["SyncEventSource"]

_DEFAULT_BACKOFF = Backoff()


@final
class SyncEventSource:
    """Iterate over a URL's server-sent events, reconnecting by itself; for sync code.

    ```python
    with SyncEventSource("https://example.com/events") as source:
        for item in source:
            ...
    ```

    The same client as [EventSource][sse_channels.client.EventSource], with
    ``httpx.Client``, ``for`` and ``close()``; every option means the same (``refresh``
    must be a plain function here, and ``client`` an ``httpx.Client``).

    One thread reads at a time. ``close()`` may be called from any thread: a read that
    waits for data or for its next reconnection ends at once with ``StopIteration``
    (a connection attempt in progress ends within its connect timeout). An exception that
    interrupts a read (``KeyboardInterrupt``) closes the connection first; reading again
    reconnects and resumes.

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
        refresh: Callable[[Reconnect], None] | None = None,
        on_state: Callable[[StateChange], Any] | None = None,
        client: httpx.Client | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
    ) -> None:
        if not isinstance(backoff, Backoff):
            raise TypeError("backoff must be a Backoff")
        if refresh is not None and not callable(refresh):
            raise TypeError("refresh must be callable")
        if refresh is not None and inspect.iscoroutinefunction(refresh):
            raise TypeError("SyncEventSource needs a plain function as refresh")
        if client is not None and not isinstance(client, httpx.Client):
            raise TypeError("client must be an httpx.Client")
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
        self._own_client: httpx.Client | None = None
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._pending: deque[Event | Gap] = deque()
        self._delay: float | None = None
        self._closed = False
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._reader: int | None = None
        self._idle = threading.Event()
        self._idle.set()

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
        """``True`` once the source is closed (``close()``, a 204 or an error)."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Event | Gap:
        """The next event or gap, connecting and reconnecting as needed.

        Raises:
            StopIteration: the source is closed, or the server answered 204.
            StatusError, ContentTypeError, httpx.HTTPError: a failure that is not retried.
            RuntimeError: another thread is reading this source.
        """
        with self._lock:
            if self._reader is not None:
                raise RuntimeError("another thread is already reading this SyncEventSource")
            self._reader = threading.get_ident()
            self._idle.clear()
        try:
            while True:
                if self._closed:
                    raise StopIteration
                if self._pending:
                    return self._pending.popleft()
                self._step()
        except BaseException as exc:
            self._disconnect()
            if self._closed:
                if isinstance(exc, (StopIteration, httpx.HTTPError)):
                    # A read that close() interrupted from another thread fails; it ends.
                    raise StopIteration from None
            elif isinstance(exc, Exception):
                self._closed = True
                self._session.close(exc)
            else:
                self._session.interrupted()
            raise
        finally:
            with self._lock:
                self._reader = None
                self._idle.set()

    def close(self) -> None:
        """Close the connection and end the iteration; idempotent, from any thread.

        Called from another thread while a read is in progress, it interrupts that read
        and returns once the reader has let go of its connection.
        """
        self._closed = True
        self._wake.set()
        with self._lock:
            reader = self._reader
            response = self._response
        if reader is not None and reader != threading.get_ident():
            if response is not None:
                _interrupt(response)
            self._idle.wait()
        self._disconnect()
        if self._own_client is not None:
            client, self._own_client = self._own_client, None
            client.close()
        self._pending.clear()
        self._session.close()

    # -- one step of the reading loop -----------------------------------------------

    def _step(self) -> None:
        if self._chunks is None:
            self._connect()
            return
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._disconnect()
            if self._closed:
                return  # close() shut the socket down: the end it caused is no reconnect
            self._delay = self._session.ended()
            return
        except httpx.HTTPError as error:
            self._disconnect()
            if self._closed:
                return
            self._delay = self._session.failed(error)
            return
        self._pending.extend(self._session.feed(chunk))

    def _connect(self) -> None:
        session = self._session
        if self._delay is not None:
            if self._wake.wait(self._delay):
                return  # close() was called
            self._delay = None
            if self._refresh is not None:
                self._refresh(session.reconnect())
        session.starting()
        client = self._client
        if client is None:
            if self._own_client is None:
                self._own_client = httpx.Client()
            client = self._own_client
        request = session.build_request(client, self._timeout)
        try:
            response = client.send(request, stream=True, follow_redirects=True)
        except httpx.HTTPError as error:
            self._delay = session.failed(error)
            return
        try:
            readable = session.response(response.status_code, response.headers)
        except ClientError as error:
            response.close()
            self._delay = session.failed(error)
            return
        except BaseException:
            response.close()
            raise
        if not readable:
            response.close()
            self._closed = True
            session.close()
            return
        with self._lock:
            self._response = response
        self._chunks = response.iter_bytes()
        if self._closed:  # close() came while connecting, before it could see the response
            _interrupt(response)

    def _disconnect(self) -> None:
        chunks = self._chunks
        with self._lock:
            response, self._response = self._response, None
        self._chunks = None
        try:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        finally:
            if response is not None:
                response.close()


def _interrupt(response: httpx.Response) -> None:
    """Wake a thread blocked reading ``response``: shut its socket down for both directions.

    Closing a socket does not wake a ``recv`` blocked on it in another thread; a shutdown
    does, and the reader then sees the end of the stream.
    """
    stream = response.extensions.get("network_stream")
    get_info = getattr(stream, "get_extra_info", None)
    sock = cast("socket.socket | None", get_info("socket") if get_info is not None else None)
    if sock is not None:
        # Already closed, if it fails: the reader is on its way out then.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
