"""The errors sse-channels raises.

Bad input is reported with the built-in ``ValueError`` / ``TypeError`` at the call that received
it. Everything else derives from one base class::

    SSEChannelsError
    ├── StoreClosedError         the store was closed with aclose(); you did it
    ├── SubscriptionClosed       the subscription ended; ``reason`` says why
    │   └── SlowConsumerError    it fell further behind than its buffer allows
    ├── CredentialExpiredError   a stream was asked to run on a credential already expired
    └── BackendError             the backend (e.g. Redis) failed; the world did it
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "BackendError",
    "CredentialExpiredError",
    "SSEChannelsError",
    "SlowConsumerError",
    "StoreClosedError",
    "SubscriptionClosed",
]


class SSEChannelsError(Exception):
    """Base class of every error raised by sse-channels itself."""


class StoreClosedError(SSEChannelsError):
    """The store was closed with ``aclose()`` and can no longer send or subscribe.

    The message says what to do, because the usual way to meet it is a second test that
    enters an app's module-level store again after the first test's ``async with`` closed it.
    """

    HINT = "a closed store cannot be reopened: create a new ChannelStore (in tests, one per test)"

    def __init__(self, message: str = "the store is closed") -> None:
        if self.HINT not in message:
            message = f"{message}; {self.HINT}"
        super().__init__(message)


class SubscriptionClosed(SSEChannelsError):
    """The subscription has ended; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"subscription closed: {reason}")
        self.reason = reason


class SlowConsumerError(SubscriptionClosed):
    """The subscriber fell behind by more than the channel retains; it must resume from its id."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__("slow_consumer", message or "subscriber fell too far behind")


class CredentialExpiredError(SSEChannelsError):
    """A stream's ``expires`` (its credential's expiry) is not in the future: ``expired_at``."""

    def __init__(self, expired_at: datetime, message: str | None = None) -> None:
        super().__init__(
            message
            or f"the credential expired at {expired_at.isoformat()}: authorise the client again"
        )
        self.expired_at = expired_at


class BackendError(SSEChannelsError):
    """The backend failed in a way the store could not recover from by itself."""
