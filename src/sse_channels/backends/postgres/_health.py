"""What ``statistics()`` reports about the backend's connections. Imports nothing of ours."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Health", "describe"]


@dataclass(slots=True)
class Health:
    """Counters and the last error, written by the reader, the link's callers and threads.

    Each field is replaced whole, so a send from another thread may record
    ``last_error`` without a lock.
    """

    reader_connected: bool = False
    #: Connections of the reader lost (not failed attempts to connect).
    reconnects: int = 0
    last_error: str | None = None
    events_read: int = 0
    gaps: int = 0
    #: Reads that found committed events held back by an older transaction still open.
    held_reads: int = 0
    #: Rows deleted by retention trimming run from this process.
    trimmed: int = 0


def describe(exc: BaseException) -> str:
    """``"<type>: <message>"``: what ``last_error`` shows."""
    return f"{type(exc).__name__}: {exc}"
