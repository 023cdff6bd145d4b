"""Which failures are retried, and the server's ``Retry-After``."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeAlias

import httpx

from ._errors import ContentTypeError, StatusError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RetryStrategy", "default_retry", "parse_retry_after"]

#: ``(error, attempt) -> bool``: retry after ``error``? ``attempt`` counts the attempts
#: that failed in a row, this one included (1 for the first failure).
RetryStrategy: TypeAlias = "Callable[[Exception, int], bool]"


def default_retry(error: Exception, attempt: int) -> bool:
    """The default strategy: retry network errors, 5xx, 408 and 429, forever.

    Not retried: 401, 403, 404 and every other status below 500 (including 3xx that were
    not followed and 2xx other than 200), an answer that is not ``text/event-stream``, and
    anything that is not a network error (a broken gzip body, too many redirects, a bug).
    Write your own to give up after some attempts, e.g.
    ``lambda error, attempt: attempt <= 5 and default_retry(error, attempt)``.
    """
    if isinstance(error, StatusError):
        return error.status >= 500 or error.status in (408, 429)
    if isinstance(error, ContentTypeError):
        return False
    return isinstance(error, httpx.TransportError)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds from ``now``: delay-seconds or an HTTP-date.

    Returns ``None`` for a missing or malformed value; a date in the past gives ``0.0``.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" and obsolete forms: HTTP-dates are always GMT
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())
