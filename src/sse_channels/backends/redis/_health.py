"""What ``statistics()`` reports about the backend's connections. Imports nothing of ours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Health", "describe"]


@dataclass(slots=True)
class Health:
    """Counters, the last error, and who is told of errors.

    Written by the reader, the link's callers and threads.
    Each field is replaced whole (never read-modify-written from a thread), so a send from
    another thread may record ``last_error`` without a lock.
    """

    reader_connected: bool = False
    #: Connections of the reader lost (not failed attempts to connect).
    reconnects: int = 0
    last_error: str | None = None
    events_read: int = 0
    gaps: int = 0
    #: Told of every failure recorded (the store's metrics), or ``None``.
    on_error: Callable[[BaseException], None] | None = None

    def failed(self, exc: BaseException) -> None:
        """Record a failure as ``last_error`` and tell ``on_error``."""
        self.last_error = describe(exc)
        on_error = self.on_error
        if on_error is not None:
            on_error(exc)


def describe(exc: BaseException) -> str:
    """``"<type>: <message>"``: what ``last_error`` shows."""
    return f"{type(exc).__name__}: {exc}"
