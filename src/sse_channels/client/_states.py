"""Connection states and the change notices an observer receives."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import final

__all__ = ["ConnectionState", "StateChange"]


@final
class ConnectionState(str, enum.Enum):
    """Where a client's connection is; the same four words as the browser module's ``state``."""

    #: The first connection is being made.
    CONNECTING = "connecting"
    #: The server answered with an event stream; events are flowing.
    OPEN = "open"
    #: The connection was lost or refused with a status that is retried; waiting, then
    #: connecting again (with ``Last-Event-ID``).
    RECONNECTING = "reconnecting"
    #: Stopped for good: ``close()``, a 204, or an error that is not retried.
    CLOSED = "closed"


@final
@dataclass(frozen=True, slots=True)
class StateChange:
    """One change of a client's connection state, passed to its ``on_state`` callback.

    Attributes:
        state: the new state.
        delay: for ``RECONNECTING``, the seconds the client waits before connecting again.
        error: what ended the previous connection or attempt (``None`` when the server
            ended the stream normally, or on ``close()``).
        attempt: connection attempts that failed in a row, this one included (0 once a
            connection is open or after the server ended one normally).
    """

    state: ConnectionState
    delay: float | None = None
    error: BaseException | None = None
    attempt: int = 0
