"""Streams that end when the credential behind them expires: the check and the last words."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Final

from .._encode import format_sse
from .._exceptions import CredentialExpiredError

__all__ = ["EXPIRY_RETRY", "expiry_chunk", "seconds_left"]

#: The ``retry:`` (ms) a stream ends with when its credential expires, unless its options
#: set a ``retry`` of their own: soon enough that the live updates barely pause while the
#: browser reconnects with its fresh credential, late enough that a refresh of the
#: credential in flight (a cookie renewed by the page) lands first.
EXPIRY_RETRY: Final = 1000


def seconds_left(expires: datetime) -> float:
    """Seconds from now until ``expires``, a timezone-aware ``datetime``.

    Raises:
        TypeError: ``expires`` is not a ``datetime``.
        ValueError: it is naive (no timezone): it could mean any of 24 hours.
        CredentialExpiredError: it is not in the future.
    """
    if not isinstance(expires, datetime):
        raise TypeError(f"expires must be a timezone-aware datetime, not {expires!r}")
    if expires.utcoffset() is None:
        raise ValueError(
            f"expires must be timezone-aware, e.g. datetime.fromtimestamp(exp, timezone.utc), "
            f"not the naive {expires!r}"
        )
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    if left <= 0:
        raise CredentialExpiredError(expires)
    return left


def expiry_chunk(retry: int | None) -> bytes:
    """The block a stream ends with when its credential expires: a comment and ``retry:``."""
    return format_sse(comment="expired", retry=EXPIRY_RETRY if retry is None else retry)
