"""What both clients share: the request to make, and what to do after each outcome.

No I/O here: the async and the sync client feed it what happened (a status, chunks, an
error, the end of a body) and it answers with events, a delay, or an error to raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import httpx

from .._encode import check_id
from ._errors import ContentTypeError, StatusError
from ._gap import as_item
from ._parser import ResponseParser
from ._retry import default_retry, parse_retry_after
from ._states import ConnectionState, StateChange

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .._event import Event
    from ._backoff import Backoff, BackoffTimer
    from ._gap import Gap
    from ._retry import RetryStrategy

__all__ = ["Reconnect", "Session"]


@dataclass(eq=False, slots=True)
class Reconnect:
    """What the next connection will send, handed to the ``refresh`` hook to change.

    Change ``headers`` and ``params`` in place (e.g. set a fresh ``Authorization``);
    the changes stay for every later connection too.

    Attributes:
        headers: the request headers (case-insensitive; ``Accept``, ``Cache-Control`` and
            ``Last-Event-ID`` are set by the client after the hook and cannot be changed).
        params: query parameters added to the URL.
        attempt: attempts that failed in a row (0 after the server ended a stream).
        last_event_id: the id this reconnection resumes from (``""``: none yet).
        error: what ended the previous connection or attempt, or ``None``.
    """

    headers: httpx.Headers
    params: dict[str, str]
    attempt: int = 0
    last_event_id: str = ""
    error: Exception | None = None


@final
class Session:
    """The reconnection state of one client: last id, backoff, retry policy, state."""

    def __init__(
        self,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        last_event_id: str | None,
        backoff: Backoff,
        retry: RetryStrategy | None,
        on_state: Callable[[StateChange], Any] | None,
        timer: BackoffTimer | None = None,
    ) -> None:
        if not isinstance(url, (str, httpx.URL)):
            raise TypeError(f"url must be a str or httpx.URL, not {type(url).__name__}")
        self.url = httpx.URL(url)
        if self.url.scheme not in ("http", "https"):
            raise ValueError(f"url must be http:// or https://, not {str(url)!r}")
        if last_event_id is not None:
            check_id(last_event_id)
        if retry is not None and not callable(retry):
            raise TypeError("retry must be a callable (error, attempt) -> bool")
        if on_state is not None and not callable(on_state):
            raise TypeError("on_state must be callable")
        self.headers = httpx.Headers(headers)
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.last_event_id = last_event_id or ""
        self.timer = timer if timer is not None else backoff.timer()
        self.strategy: RetryStrategy = retry if retry is not None else default_retry
        self.on_state = on_state
        self.state = ConnectionState.CLOSED
        self.attempt = 0
        self.connections = 0
        self.retry_ms: int | None = None
        self.error: Exception | None = None
        self.parser: ResponseParser | None = None

    # -- the request -----------------------------------------------------------------

    def reconnect(self) -> Reconnect:
        """The hook's view of the next request (its ``headers`` are this session's own)."""
        return Reconnect(self.headers, self.params, self.attempt, self.last_event_id, self.error)

    def request_headers(self) -> httpx.Headers:
        headers = httpx.Headers(self.headers)
        headers["accept"] = "text/event-stream"
        headers["cache-control"] = "no-store"
        if self.last_event_id:
            headers["last-event-id"] = self.last_event_id
        elif "last-event-id" in headers:
            del headers["last-event-id"]
        return headers

    def build_request(self, client: httpx.Client | httpx.AsyncClient, timeout: Any) -> Any:
        return client.build_request(
            "GET",
            self.url,
            headers=self.request_headers(),
            params=self.params or None,
            timeout=timeout,
        )

    # -- outcomes --------------------------------------------------------------------

    def starting(self) -> None:
        """An attempt starts; the first one is ``CONNECTING``."""
        if self.state is ConnectionState.CLOSED and self.connections == 0 and self.attempt == 0:
            self._set(StateChange(ConnectionState.CONNECTING))

    def response(self, status: int, headers: httpx.Headers) -> bool:
        """Check a response's head: ``True`` to read it, ``False`` to stop (a 204).

        Raises:
            StatusError: any status but 200 and 204.
            ContentTypeError: a 200 that is not an event stream.
        """
        if status == 204:
            return False
        if status != 200:
            raise StatusError(
                status, dict(headers.items()), parse_retry_after(headers.get("retry-after"))
            )
        content_type = headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
            raise ContentTypeError(content_type)
        self.parser = ResponseParser(self.last_event_id)
        self.connections += 1
        self.attempt = 0
        self.error = None
        self.timer.connected()
        self._set(StateChange(ConnectionState.OPEN))
        return True

    def feed(self, chunk: bytes) -> list[Event | Gap]:
        """The events (and gaps) a chunk of the open response completes."""
        parser = self.parser
        assert parser is not None
        events = parser.feed(chunk)
        self.last_event_id = parser.last_event_id
        retry = parser.retry
        if retry is not None and retry != self.retry_ms:
            self.retry_ms = retry
            self.timer.set_base(retry / 1000)
        return [as_item(event) for event in events]

    def ended(self) -> float:
        """The server ended the response: reconnect after the returned delay."""
        self.parser = None
        self.error = None
        delay = self.timer.next_delay()
        self._set(StateChange(ConnectionState.RECONNECTING, delay, None, 0))
        return delay

    def failed(self, error: Exception) -> float:
        """An attempt or an open connection failed: the delay, or ``error`` is raised.

        Raises:
            Exception: ``error`` itself, when the strategy does not retry it.
        """
        self.parser = None
        self.attempt += 1
        self.error = error
        if not self.strategy(error, self.attempt):
            self.close(error)
            raise error
        retry_after = error.retry_after if isinstance(error, StatusError) else None
        delay = self.timer.next_delay(retry_after)
        self._set(StateChange(ConnectionState.RECONNECTING, delay, error, self.attempt))
        return delay

    def interrupted(self) -> None:
        """The reader was cancelled with a connection open: the next read reconnects at once."""
        self.parser = None
        if self.state is ConnectionState.OPEN:
            self._set(StateChange(ConnectionState.RECONNECTING, 0.0, None, 0))

    def close(self, error: BaseException | None = None) -> None:
        self.parser = None
        if self.state is not ConnectionState.CLOSED:
            self._set(StateChange(ConnectionState.CLOSED, None, error, self.attempt))

    def _set(self, change: StateChange) -> None:
        self.state = change.state
        if self.on_state is not None:
            self.on_state(change)
