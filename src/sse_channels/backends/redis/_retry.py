"""The retry rule of a send, shared by ``publish`` (async) and ``publish_sync`` (a thread).

A send whose connection drops is tried again, up to ``SEND_ATTEMPTS`` times in all, with
jittered exponential backoff; every retry carries the same token, so the publish script
returns the stored entry instead of storing the event twice. Anything but a connection
error is final (Redis refused the event). Every failure is recorded as ``last_error``.

The rule is a value, not a loop: the two callers differ only in how they wait
(``anyio.sleep`` or ``time.sleep``). Imports redis-py's exceptions, the package's
``BackendError`` and ``_health``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..._exceptions import BackendError

if TYPE_CHECKING:
    from ._health import Health

__all__ = ["CONNECTION_ERRORS", "SEND_ATTEMPTS", "SendRetry", "backoff"]

#: Attempts of one send when the connection drops (a retry never stores it twice).
SEND_ATTEMPTS = 4
#: What counts as "the connection failed": the send may be retried.
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (spreads many reconnecting processes out)."""
    return random.uniform(base / 2, min(cap, base * 2**attempt))


@final
class SendRetry:
    """One send's attempts: ask ``retrying`` before each, tell ``failed`` of each failure."""

    __slots__ = ("_health", "attempt")

    def __init__(self, health: Health) -> None:
        self._health = health
        self.attempt = 0

    @property
    def retrying(self) -> bool:
        """An earlier attempt may have stored the event (the script then looks for it)."""
        return self.attempt > 0

    def failed(self, exc: Exception) -> float:
        """Record a failed attempt; the seconds to wait before the next one.

        Raises:
            BackendError: no attempt is left, or Redis refused the event (the event was
                not stored). ``exc`` is its cause.
        """
        if not isinstance(exc, CONNECTION_ERRORS):
            raise BackendError(f"Redis refused the event: {exc}") from exc
        self._health.failed(exc)
        self.attempt += 1
        if self.attempt == SEND_ATTEMPTS:
            raise BackendError(f"could not send to Redis: {exc}") from exc
        return backoff(self.attempt, 0.05, 1.0)
