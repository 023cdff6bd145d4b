"""The one streaming engine: what to write, when, and when to stop, for every entry point.

An [EventStream][sse_channels.asgi.EventStream] is driven in one of two ways, with the
same writer loop, heartbeats, write deadline, lifetime and clean-up:

- **served** (``await stream.serve(scope, receive, send)``): it owns ``send``. The writer
  runs in the caller's task; one watchdog task listens for ``http.disconnect`` and, between
  messages, writes heartbeats while the writer waits, ends the stream at its lifetime, and
  gives up on a write that has taken longer than ``send_timeout``. Two tasks per stream
  and no cancel scope per batch: the writer's wait for events is never interrupted (a
  heartbeat is written beside it; the lifetime ends it by closing the subscription). On
  asyncio the two are supervised by a small ``_Supervisor`` instead of an anyio task
  group: the same structure (the watchdog is cancelled and awaited before ``serve``
  returns; either side ends the other), for a fifth of the memory per stream, which is
  what decides how many connections a process holds. Elsewhere (trio) it is a task group.
- **iterated** (``async for chunk in stream``): a framework that owns ``send`` (Django,
  Quart) writes each chunk itself. The time from handing out a chunk to being asked for
  the next one is the framework's write; a timer armed in between gives up on the client
  when it exceeds ``send_timeout`` (it closes the subscription and cancels the framework's
  writing task, on asyncio, which is what these frameworks run on).

Every path releases the subscription in ``finally`` (or ``close()``): the client leaving
before the first event or in the middle of a write, a client that stops reading, the
subscription being revoked, the store being closed, an exception in the app.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from .._exceptions import SlowConsumerError, StoreClosedError
from .._presence import PRESENCE_PREFIX
from .._subscription import observer_of
from ._expiry import expiry_chunk, seconds_left
from ._http import HEARTBEAT, raw_headers

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from datetime import datetime
    from types import TracebackType

    from .._event import Event
    from .._presence import PresenceSession
    from .._subscription import Subscription
    from .._types import Message, Receive, Scope, Send
    from ._options import StreamOptions

__all__ = ["EventStream"]

_SSE_RAW_HEADERS: Final = tuple(raw_headers())

# Lifecycle: not started, streaming, ended (the subscription is released).
_NEW, _OPEN, _DONE = 0, 1, 2

_log = logging.getLogger("sse_channels.asgi")


@final
class EventStream:
    """One subscription streamed as ``text/event-stream``: the writer loop of every entry point.

    ``SSEApp``, ``EventStreamResponse`` and the framework helpers all build one of these;
    use it directly to integrate another framework. Serve it where you own ``send``, or
    iterate it where the framework does (see the module docs).

    It writes the opening comment at once, then each batch of pending events in one write,
    and a comment heartbeat after ``options.heartbeat`` seconds without a write (only
    between batches, so an event is never split). It ends the response normally when the
    subscription ends (revoked, store closed, slow consumer: the client then reconnects
    and resumes), its lifetime has passed, or its credential expired (``expires``: it
    ends with a ``retry:`` hint, the subscription's ``close_reason`` is ``"expired"``,
    and the browser reconnects and is authorised again); it stops at once, without finishing the
    response, when the client disconnects, when ``send`` raises ``OSError``, or when one
    write has not completed within ``options.send_timeout`` seconds.

    Args:
        subscription: what to stream; the stream owns it from now on.
        options: how it behaves (validated already).
        status: the HTTP status (when served).
        headers: the ASGI raw headers (when served); the SSE headers by default.
        ends_in: seconds after which it must end whatever its ``max_lifetime``; the
            earlier of the two wins.
        expires: when the credential that opened it expires (a timezone-aware
            ``datetime``, e.g. from a JWT's ``exp``): it ends then, cleanly, with a
            ``retry:`` of ``options.retry`` or [EXPIRY_RETRY][sse_channels.asgi.EXPIRY_RETRY]
            ms, unless its lifetime ends it first.

    Raises:
        CredentialExpiredError: ``expires`` is not in the future.
        TypeError, ValueError: ``expires`` is not a timezone-aware ``datetime``.
    """

    __slots__ = (
        "_cancel",
        "_client",
        "_ends",
        "_error",
        "_farewell",
        "_heartbeat",
        "_last_write",
        "_member",
        "_sending_since",
        "_state",
        "_timer",
        "_unwritten",
        "_waiting",
        "headers",
        "options",
        "status",
        "subscription",
    )

    def __init__(
        self,
        subscription: Subscription,
        options: StreamOptions,
        *,
        status: int = 200,
        headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...] = _SSE_RAW_HEADERS,
        ends_in: float | None = None,
        expires: datetime | None = None,
    ) -> None:
        self.subscription = subscription
        self.options = options
        self.status = status
        self.headers = headers
        lifetime = options.lifetime()
        if ends_in is not None:
            lifetime = ends_in if lifetime is None else min(lifetime, ends_in)
        #: The last chunk when the end is the credential's expiry; ``None``: it is not.
        self._farewell: bytes | None = None
        if expires is not None:
            left = seconds_left(expires)
            if lifetime is None or left <= lifetime:
                lifetime = left
                self._farewell = expiry_chunk(options.retry)
        self._last_write = now = time.monotonic()
        self._ends = None if lifetime is None else now + lifetime
        #: The scope's ``client`` (host, port), for the log (known when served).
        self._client: tuple[str, int] | None = None
        self._sending_since: float | None = None
        self._waiting = False
        self._heartbeat: anyio.Event | None = None  # set while the watchdog writes one
        #: Ends the other side: the task group's scope, or (asyncio) the supervisor.
        self._cancel: anyio.CancelScope | _Supervisor | None = None
        self._error: Exception | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._member: PresenceSession | None = None
        #: Iterated, with metrics: the batch handed to the framework, until it asks again.
        self._unwritten: list[Event] | None = None
        self._state = _NEW

    @property
    def ends_at(self) -> float | None:
        """When (``time.monotonic()``) it ends at the latest; ``None``: no limit."""
        return self._ends

    # -- served: the writer loop and its watchdog ----------------------------------------------

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, *, headers_sent: bool = False
    ) -> None:
        """Stream as the ASGI response to ``scope``, until it ends or the client goes.

        A ``HEAD`` request gets the status and headers alone, and the subscription is
        released at once (a HEAD response has no body to stream).

        Args:
            scope: the request's ASGI scope.
            receive: the ASGI ``receive``; it is listened to for ``http.disconnect``.
            send: the ASGI ``send``.
            headers_sent: the framework has sent the status and headers itself (Litestar
                does, with its cookies); write the body only.

        Raises:
            Exception: whatever ``send``/``receive`` raise, except ``OSError`` from
                ``send``, which means the client is gone and ends the stream quietly.

        Cancelling it ends the stream and releases the subscription.
        """
        if scope.get("method") == "HEAD":
            self.close()
            if not headers_sent:
                await send(
                    {"type": "http.response.start", "status": self.status, "headers": self.headers}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        self._client = scope.get("client")  # formatted only if a line is logged
        self._open()
        supervisor = _Supervisor.of_current_task()
        try:
            async with anyio.create_task_group() if supervisor is None else supervisor as group:
                self._cancel = group.cancel_scope
                group.start_soon(self._watch, receive, send)
                # The writer loop, inline (a parked stream's memory is mostly its frames):
                # the start, the opening comment, each batch in one write, the end.
                try:
                    if not headers_sent:
                        start = {
                            "type": "http.response.start",
                            "status": self.status,
                            "headers": self.headers,
                        }
                        await self._send(send, start)
                    await self._send(send, _body(self.options.opening))
                    metrics = observer_of(self.subscription)
                    subscription = self.subscription
                    while True:
                        # ``_next_events()``, inline: a parked stream's memory is its frames.
                        self._waiting = True
                        try:
                            batch = await subscription.receive_batch()
                        except SlowConsumerError:
                            batch = []  # end normally: the client resumes from its last id
                        finally:
                            self._waiting = False
                        heartbeat = self._heartbeat
                        if heartbeat is not None:
                            await heartbeat.wait()  # the watchdog is writing one
                        if not batch:
                            break
                        await self._send(send, _body(_join(batch)))
                        if metrics is not None:
                            metrics.written(self.subscription, batch)
                    if self.subscription.close_reason == "expired":
                        assert self._farewell is not None
                        await self._send(send, _body(self._farewell))
                    end = {"type": "http.response.body", "body": b"", "more_body": False}
                    await self._send(send, end)
                except OSError:
                    pass  # the client is gone: ASGI 2.4 servers raise it from send()
                except Exception as exc:
                    # Raised after the task group, so the server sees the error itself and
                    # not an ExceptionGroup around it.
                    if self._error is None:
                        self._error = exc
                group.cancel_scope.cancel()
        finally:
            self.close()
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def _next_events(self) -> list[Event] | None:
        """The next batch of events; ``None`` once the subscription ended."""
        self._waiting = True
        try:
            batch = await self.subscription.receive_batch()
        except SlowConsumerError:
            batch = []  # end normally: the client resumes from its last id, or gets a gap
        finally:
            self._waiting = False
        heartbeat = self._heartbeat
        if heartbeat is not None:
            await heartbeat.wait()  # the watchdog is writing one: writes never interleave
        return batch or None

    async def _send(self, send: Send, message: Message) -> None:
        self._sending_since = started = time.monotonic()
        await send(message)
        self._sending_since = None
        self._last_write = started

    async def _watch(self, receive: Receive, send: Send) -> None:
        """Listen for the client leaving; meanwhile, heartbeats, the lifetime, the deadline."""
        heartbeat = self.options.heartbeat
        send_timeout = self.options.send_timeout
        try:
            while True:
                now = time.monotonic()
                wake = math.inf
                if send_timeout is not None:
                    since = self._sending_since
                    if since is None:
                        # A write starting after this check is seen at the next one, early
                        # enough to catch it exactly send_timeout after it started.
                        wake = now + send_timeout
                    elif now - since >= send_timeout:
                        self._time_out()
                        return
                    else:
                        wake = since + send_timeout
                ends = self._ends
                if ends is not None:
                    if now >= ends:
                        # The writer finishes its current write, finds the subscription
                        # ended, and ends the response cleanly.
                        self._reach_end()
                    else:
                        wake = min(wake, ends)
                if heartbeat is not None:
                    due = self._last_write + heartbeat
                    if now >= due:
                        if self._waiting and not self.subscription.closed:
                            if not await self._write_heartbeat(send, send_timeout):
                                return
                            continue
                        due = now + heartbeat  # the writer is busy: it writes soon anyway
                    wake = min(wake, due)
                # Listen until the next thing is due. No timer when nothing ever is.
                if wake == math.inf:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    break
                supervisor = self._cancel
                if not isinstance(supervisor, _Supervisor):
                    with anyio.move_on_after(wake - now):
                        while (await receive())["type"] != "http.disconnect":
                            pass
                        break
                    continue
                timer = supervisor.interrupt_after(wake - now)
                try:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    break
                except asyncio.CancelledError:
                    if not supervisor.interrupted():
                        raise
                finally:
                    timer.cancel()
        except OSError:
            pass  # from a heartbeat's send(): the client is gone
        except Exception as exc:
            if self._error is None:
                self._error = exc
        assert self._cancel is not None
        self._cancel.cancel()

    async def _write_heartbeat(self, send: Send, send_timeout: float | None) -> bool:
        """Write a heartbeat while the writer waits for events; ``False``: it timed out."""
        done = self._heartbeat = anyio.Event()
        try:
            supervisor = self._cancel
            if not isinstance(supervisor, _Supervisor):
                with anyio.move_on_after(math.inf if send_timeout is None else send_timeout):
                    await send(_body(HEARTBEAT))
                    self._last_write = time.monotonic()
                    return True
                self._time_out()
                return False
            timer = None if send_timeout is None else supervisor.interrupt_after(send_timeout)
            try:
                await send(_body(HEARTBEAT))
            except asyncio.CancelledError:
                if not supervisor.interrupted():
                    raise
                self._time_out()
                return False
            finally:
                if timer is not None:
                    timer.cancel()
            self._last_write = time.monotonic()
            return True
        finally:
            self._heartbeat = None
            done.set()

    def _time_out(self) -> None:
        _log.info(
            "gave up on client %s: a write took longer than send_timeout (%s s); channels %s",
            self._address(),
            self.options.send_timeout,
            self.subscription.channels,
        )
        # Released now, even if the server shields its socket write from cancellation
        # (hypercorn does) and send() stays blocked.
        self.subscription.close()
        observer = self.options.observer
        if observer is not None:
            observer.write_timed_out(self.subscription)
        metrics = observer_of(self.subscription)
        if metrics is not None:
            metrics.write_timed_out(self.subscription)
        if self._cancel is not None:
            self._cancel.cancel()

    # -- iterated: a framework writes each chunk ------------------------------------------

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> bytes:
        """The next chunk to write: the opening comment, a batch, or a heartbeat.

        Raises:
            StopAsyncIteration: the stream ended; the subscription is released.

        Cancelling it (the client left) loses no event; ``aclose()`` releases the
        subscription.
        """
        self._disarm()  # the framework asks again: its write of the last chunk is done
        if self._unwritten is not None:
            written, self._unwritten = self._unwritten, None
            metrics = observer_of(self.subscription)
            if metrics is not None:
                metrics.written(self.subscription, written)
        if self._state == _DONE:
            raise StopAsyncIteration
        if self._state == _NEW:
            self._open()
            chunk: bytes | None = self.options.opening
        else:
            chunk = await self._pull()
        if chunk is None:
            self.close()
            raise StopAsyncIteration
        self._last_write = time.monotonic()
        self._arm()
        return chunk

    async def _pull(self) -> bytes | None:
        heartbeat = self.options.heartbeat
        wait = math.inf if heartbeat is None else heartbeat
        ends = self._ends
        if ends is not None:
            left = ends - time.monotonic()
            if left <= 0:
                return self._reach_end()
            wait = min(wait, left)
        if wait == math.inf:
            return self._chunk(await self._next_events())
        # Here (and only here) a wait has a timeout of its own: nothing else runs beside a
        # framework's iteration to interrupt it.
        with anyio.move_on_after(wait):
            return self._chunk(await self._next_events())
        if ends is not None and time.monotonic() >= ends:
            return self._reach_end()
        return HEARTBEAT

    def _chunk(self, batch: list[Event] | None) -> bytes | None:
        if batch is None:
            return None
        if observer_of(self.subscription) is not None:
            self._unwritten = batch  # written once the framework asks for the next chunk
        return _join(batch)

    def _arm(self) -> None:
        send_timeout = self.options.send_timeout
        if send_timeout is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not asyncio: there is no way to cancel the framework's writing task
        task = asyncio.current_task()
        if task is not None:
            self._timer = loop.call_later(send_timeout, self._write_took_too_long, task)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _write_took_too_long(self, task: asyncio.Task[object]) -> None:
        self._timer = None
        self._time_out()
        task.cancel()  # the framework's write is stuck in send(): end its response

    # -- both ------------------------------------------------------------------------------

    def _reach_end(self) -> bytes | None:
        """The lifetime or the credential ran out: end the subscription; the last chunk."""
        self._ends = None
        farewell = self._farewell
        self.subscription.close("closed" if farewell is None else "expired")
        return farewell

    def _open(self) -> None:
        self._state = _OPEN
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "stream opened: client %s, channels %s, last event id %r",
                self._address(),
                self.subscription.channels + list(self.subscription.patterns),
                self.subscription.last_event_id,
            )
        observer = self.options.observer
        if observer is not None:
            observer.opened(self.subscription)
        presence = self.options.presence
        key = self.subscription.key
        if presence is not None and key is not None:
            rooms = [c for c in self.subscription.channels if not c.startswith(PRESENCE_PREFIX)]
            try:
                if rooms:
                    self._member = presence.join(rooms, key)
            except StoreClosedError:
                pass  # shutting down: the store closes next, and the stream ends
            except BaseException:
                self.close()  # a key that is no member id: refused, nothing held
                raise
        metrics = observer_of(self.subscription)
        if metrics is not None:
            metrics.opened(self.subscription)

    def close(self) -> None:
        """Stop streaming and release the subscription now; idempotent, never blocks."""
        self._disarm()
        self.subscription.close()
        member, self._member = self._member, None
        if member is not None:
            member.leave()  # never blocks; the presence's worker tells the backend
        if self._state == _OPEN:
            self._log_end()
            observer = self.options.observer
            if observer is not None:
                observer.closed(self.subscription)
            metrics = observer_of(self.subscription)
            if metrics is not None:
                metrics.closed(self.subscription)
        self._state = _DONE
        self._unwritten = None

    def _address(self) -> str:
        client = self._client
        if not client:
            return "(unknown)"
        return f"{client[0]}:{client[1]}" if len(client) > 1 else str(client[0])

    def _log_end(self) -> None:
        if self.subscription.close_reason == "expired":
            _log.info(
                "stream ended: the credential behind it expired (client %s, channels %s)",
                self._address(),
                self.subscription.channels,
            )
        elif _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "stream closed: client %s, reason %s, last event id %r",
                self._address(),
                self.subscription.close_reason,
                self.subscription.last_event_id,
            )

    async def aclose(self) -> None:
        """Stop streaming and release the subscription; idempotent.

        Unlike an async generator's, it releases the subscription even when the framework
        drops the response before reading the first chunk.
        """
        self.close()


@final
class _Supervisor:
    """The writer (the caller's task) and its watchdog (a task of its own), on asyncio.

    What the served path needs of an anyio task group, and no more: ``start_soon`` starts
    the watchdog; ``cancel_scope.cancel()`` from the watchdog cancels the writer wherever
    it waits, and from the writer ends the watchdog; leaving the ``async with`` ends the
    watchdog and waits for it, and swallows the cancellation it caused the writer (on
    Python 3.11+ only if nobody else cancelled the task as well). ``interrupt_after`` is
    ``move_on_after`` for the watchdog's waits: one timer handle, no scope.
    """

    __slots__ = ("_cancelled", "_host", "_stopping", "_watch", "_woken")

    def __init__(self, host: asyncio.Task[Any]) -> None:
        self._host: asyncio.Task[Any] | None = host
        self._watch: asyncio.Task[None] | None = None
        self._cancelled = False  # the writer was cancelled by us
        self._stopping = False  # the watchdog is being ended
        self._woken = False  # a timer interrupted the watchdog's wait

    @classmethod
    def of_current_task(cls) -> _Supervisor | None:
        """One for the running asyncio task; ``None`` on another event loop (trio)."""
        try:
            host = asyncio.current_task()
        except RuntimeError:
            return None
        return None if host is None else cls(host)

    @property
    def cancel_scope(self) -> _Supervisor:
        return self

    def start_soon(self, function: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        self._watch = asyncio.get_running_loop().create_task(function(*args))

    def cancel(self) -> None:
        """From the writer: end the watchdog; from anywhere else: cancel the writer."""
        host = self._host
        if host is None:
            return
        if asyncio.current_task() is host:
            self._stop_watch()
        elif not self._cancelled:
            self._cancelled = True
            host.cancel()

    def interrupt_after(self, delay: float) -> asyncio.TimerHandle:
        """Interrupt the watchdog's wait after ``delay`` seconds (see ``interrupted``)."""
        # In a context of its own, shared: ``_interrupt`` reads no context variable, and a
        # copy of the current one per timer is one more object per parked stream.
        return asyncio.get_running_loop().call_later(delay, self._interrupt, context=_TIMERS)

    def interrupted(self) -> bool:
        """The ``CancelledError`` just caught came from ``interrupt_after``'s timer alone."""
        woken, self._woken = self._woken, False
        if not woken or self._stopping:
            return False
        assert self._watch is not None
        return _uncancel(self._watch) == 0

    def _interrupt(self) -> None:
        watch = self._watch
        if watch is not None and not self._stopping and not watch.done():
            self._woken = True
            watch.cancel()

    def _stop_watch(self) -> None:
        self._stopping = True
        watch = self._watch
        if watch is not None and not watch.done():
            watch.cancel()

    async def __aenter__(self) -> _Supervisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        host, self._host = self._host, None  # nothing cancels the writer from now on
        self._stop_watch()
        watch = self._watch
        if watch is not None and not watch.done():
            await asyncio.wait((watch,))
        if (
            self._cancelled
            and exc_type is not None
            and issubclass(exc_type, asyncio.CancelledError)
        ):
            assert host is not None
            return _uncancel(host) == 0
        return False


_TIMERS: Final = contextvars.Context()


def _uncancel(task: asyncio.Task[Any]) -> int:
    """``task.uncancel()`` (Python 3.11+): the cancellations still pending; 0 before 3.11."""
    uncancel = getattr(task, "uncancel", None)
    return 0 if uncancel is None else int(uncancel())


def _join(batch: list[Event]) -> bytes:
    return batch[0].encoded if len(batch) == 1 else b"".join([e.encoded for e in batch])


def _body(chunk: bytes) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": True}
