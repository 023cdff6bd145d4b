"""close_on_signal: end every stream when the server is told to stop."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import anyio

if TYPE_CHECKING:
    from types import FrameType

    from .._store import ChannelStore

__all__ = ["close_on_signal"]


@asynccontextmanager
async def close_on_signal(
    store: ChannelStore,
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
    *,
    first: Iterable[_Closeable] = (),
) -> AsyncIterator[None]:
    """Close ``store`` as soon as the process is told to stop; use it in the lifespan.

    Servers (uvicorn, hypercorn) wait for open responses to finish *before* they run the
    lifespan's shutdown, so an endless stream would hold them up (or be cancelled after a
    grace period). Inside this context the signal handlers already installed for
    ``signals`` (the server's) are chained: on a signal the store is closed, which ends
    every stream cleanly, and the server's own handler runs as before. No server code is
    patched; when the context exits, the previous handlers are restored.

    ``first`` are closed (``await x.aclose()``, in order) before the store, e.g. a
    [Presence][sse_channels.Presence], so that its members' leaves are announced while the
    store still sends.

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

    closeables = list(first)

    async def close_when_signalled() -> None:
        await received.wait()
        try:
            for closeable in closeables:
                await closeable.aclose()
        finally:
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


_Handler = Callable[[int, "FrameType | None"], Any]


class _Closeable(Protocol):
    async def aclose(self) -> None: ...


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
