"""collect_sse(): read events from a live URL with the reconnecting client, for tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ._testing_store import CollectTimeoutError

if TYPE_CHECKING:
    from ._event import Event
    from .client import Gap

__all__ = ["collect_sse"]


async def collect_sse(
    url: str, n: int, *, timeout: float | None = 5.0, **options: Any
) -> list[Event | Gap]:
    """Read ``n`` events (gaps included) from a running server's event stream, then hang up.

    It reads with [EventSource][sse_channels.client.EventSource] (``pip install
    "sse-channels[client]"``), so it reconnects and resumes as a real client would: use it
    to test an endpoint under a real server, e.g. that a reconnection misses nothing.

    Args:
        url: the event stream's URL.
        n: how many items to read.
        timeout: seconds to wait in all; ``None`` waits for ever.
        **options: passed on to ``EventSource`` (``headers``, ``last_event_id``,
            ``backoff``, ...).

    Returns:
        The events, and [Gap][sse_channels.client.Gap] values for gap signals, in order.

    Raises:
        CollectTimeoutError: fewer than ``n`` arrived in time; its ``events`` are those
            that did (a gap as the event it came as).
        StatusError, ContentTypeError, httpx.HTTPError: the stream cannot be read (see
            ``EventSource``); a 204 gives fewer than ``n`` items.
        ValueError, TypeError: ``n`` is not a positive ``int``, or a bad option.

    The connection is closed when it returns, raises or is cancelled.
    """
    from .client import EventSource, Gap

    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, not {n!r}")
    if n < 1:
        raise ValueError(f"n must be positive: {n}")
    items: list[Event | Gap] = []
    async with EventSource(url, **options) as source:
        with anyio.move_on_after(timeout):
            async for item in source:
                items.append(item)
                if len(items) == n:
                    break
            return items
    events = [item.event if isinstance(item, Gap) else item for item in items]
    raise CollectTimeoutError(events, n, timeout)
