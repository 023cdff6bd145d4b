"""Stream options as one validated, frozen value, and the one place keywords become it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypedDict, final

from .._encode import format_sse
from .._presence import Presence

if TYPE_CHECKING:
    from .._subscription import Subscription

__all__ = ["StreamObserver", "StreamOptions", "StreamSettings", "opening_comment", "stream_options"]


def opening_comment(retry: int | None = None) -> bytes:
    """The first bytes of a stream: a comment (and ``retry:`` if given), sent at once.

    Sent before any event so that GZip-style middleware and proxies pass the response on
    instead of holding it until the first event.

    Raises:
        ValueError, TypeError: ``retry`` is not a non-negative ``int``.
    """
    return format_sse(comment="ok", retry=retry)


class StreamObserver(Protocol):
    """Told about each stream's life: the seam for metrics and logging (a Protocol).

    Every method is called in the stream's event loop, must return quickly and must not
    raise: it runs in the writer's own path (an exception would end the stream).
    """

    def opened(self, subscription: Subscription) -> None:
        """A stream started: its headers are about to be sent."""

    def closed(self, subscription: Subscription) -> None:
        """A stream ended, however it ended (its ``close_reason`` is set by then)."""

    def write_timed_out(self, subscription: Subscription) -> None:
        """One write took longer than ``send_timeout``: the client was given up on."""


class StreamSettings(TypedDict, total=False):
    """The fields of [StreamOptions][sse_channels.asgi.StreamOptions] as keyword arguments."""

    heartbeat: float | None
    retry: int | None
    send_timeout: float | None
    max_lifetime: float | None
    lifetime_jitter: float
    observer: StreamObserver | None
    presence: Presence | None


@final
@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How a stream behaves once it is open; validated once, when it is made.

    Every entry point (``SSEApp``, ``EventStreamResponse``, ``event_stream`` and the
    framework helpers) takes one of these as ``options=`` or the same names as keyword
    arguments, and streams with the same engine, so the options mean the same everywhere.

    Attributes:
        heartbeat: seconds without a write before a comment (``: ping``) is written, so
            that proxies and load balancers keep a quiet stream open; ``None``: never.
        retry: an initial ``retry:`` (reconnection delay in ms) for the browser.
        send_timeout: seconds one write may take before the client is given up on (it
            stopped reading, or the connection is half-open); ``None``: wait forever (not
            recommended behind the open internet).
        max_lifetime: end the stream cleanly after about this many seconds; the browser
            reconnects and resumes, e.g. on another server after a deploy.
        lifetime_jitter: spread ``max_lifetime`` by up to this fraction either way, so
            that clients connected together do not all reconnect together.
        observer: told when each stream opens, closes, or times out a write (for
            metrics); ``None``: nobody.
        presence: a running [Presence][sse_channels.Presence]: each stream with a key
            (the subscription's ``key``, e.g. the user) joins the presence of the channels
            it reads (not ``presence:`` ones) under that key when it opens, and leaves
            when it ends, however it ends; ``None``: streams do not join.

    Raises:
        ValueError: a duration is not positive and finite, ``lifetime_jitter`` is not in
            [0, 1), or ``retry`` is negative.
        TypeError: a value has the wrong type.
    """

    heartbeat: float | None = 15.0
    retry: int | None = None
    send_timeout: float | None = 30.0
    max_lifetime: float | None = None
    lifetime_jitter: float = 0.1
    observer: StreamObserver | None = field(default=None, compare=False)
    presence: Presence | None = field(default=None, compare=False)
    #: The stream's first bytes: the opening comment with ``retry``, encoded once.
    opening: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("heartbeat", "send_timeout", "max_lifetime"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be positive seconds or None, not {value!r}")
        jitter = self.lifetime_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise TypeError(f"lifetime_jitter must be a number, not {jitter!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"lifetime_jitter must be in [0, 1), not {jitter!r}")
        observer = self.observer
        if observer is not None and not all(
            callable(getattr(observer, name, None))
            for name in ("opened", "closed", "write_timed_out")
        ):
            raise TypeError("observer must have opened(), closed() and write_timed_out()")
        presence = self.presence
        if presence is not None and not isinstance(presence, Presence):
            raise TypeError(f"presence must be a Presence, not {presence!r}")
        object.__setattr__(self, "opening", opening_comment(self.retry))

    def lifetime(self) -> float | None:
        """One stream's lifetime in seconds: ``max_lifetime`` with its jitter drawn."""
        if self.max_lifetime is None:
            return None
        jitter = self.lifetime_jitter
        return self.max_lifetime * (1 + random.uniform(-jitter, jitter))


_DEFAULT = StreamOptions()


def stream_options(options: StreamOptions | None, settings: StreamSettings) -> StreamOptions:
    """``options``, or a ``StreamOptions`` made from keyword ``settings``; not both.

    Raises:
        TypeError: both are given, ``options`` is not a ``StreamOptions``, or a setting
            has an unknown name or a wrong type.
        ValueError: a setting is out of range.
    """
    if options is None:
        return StreamOptions(**settings) if settings else _DEFAULT
    if not isinstance(options, StreamOptions):
        raise TypeError(f"options must be a StreamOptions, not {options!r}")
    if settings:
        raise TypeError(
            f"pass options= or keyword settings, not both (got {', '.join(sorted(settings))})"
        )
    return options
