"""The observer seam: what the store, its subscriptions, the engine and backends report.

``ChannelStore(metrics=...)`` takes an object with these methods (``sse_channels.metrics``
has two); with none, every call site is one ``is not None`` check that fails, and nothing
here is even imported at run time (the Protocol is for type checking only).

Who calls what, and where, so that each measurement is taken once:

- the store: ``sent`` after a backend accepted an event sent from this process;
  ``appended`` when an event reaches this process's log (the start of delivery lag);
- a subscription: ``delivered`` / ``handed_out`` where it hands a batch out (the same place
  its ``Counters`` count, so metrics and ``statistics()`` agree); ``ended`` when it closes,
  with ``close_reason`` set;
- the streaming engine: ``opened``, ``written`` (after a batch's write completed),
  ``write_timed_out``, ``closed``;
- a backend with an ``observe(observer)`` method: ``backend_reconnected`` and
  ``backend_error``.

Every method is called in the event loop's thread (``backend_error`` may also come from a
thread sending with ``send_sync``), must return quickly and must not raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._event import Event
    from ._subscription import Subscription

__all__ = ["HOOKS", "BackendObserver", "Observer", "check_observer"]

#: Every method an ``Observer`` has.
HOOKS = (
    "sent",
    "appended",
    "delivered",
    "handed_out",
    "ended",
    "opened",
    "written",
    "write_timed_out",
    "closed",
    "backend_reconnected",
    "backend_error",
)


class BackendObserver(Protocol):
    """What a backend tells the store's metrics about its connections (a Protocol)."""

    def backend_reconnected(self, backend: str, outage: float) -> None:
        """The backend is connected again after ``outage`` seconds without a connection."""

    def backend_error(self, backend: str, error: BaseException) -> None:
        """An operation of the backend failed with ``error`` (it may be retried)."""


class Observer(BackendObserver, Protocol):
    """Everything the store, its subscriptions and its streams report (a Protocol)."""

    def sent(self, channel: str) -> None:
        """An event sent from this process was accepted by the backend."""

    def appended(self, event: Event) -> None:
        """An event reached this process's log (sent here, or read from the backend)."""

    def delivered(self, subscription: Subscription, channel: str, count: int) -> None:
        """``count`` events of ``channel`` were handed out, with no gap among them."""

    def handed_out(self, subscription: Subscription, batch: list[Event], replayed: int) -> None:
        """A batch was handed out: events, gap signals, ``replayed`` of them from before."""

    def ended(self, subscription: Subscription) -> None:
        """A subscription closed; its ``close_reason`` says why."""

    def opened(self, subscription: Subscription) -> None:
        """A stream of ``subscription`` started."""

    def written(self, subscription: Subscription, batch: list[Event]) -> None:
        """A stream finished writing ``batch`` to its client."""

    def write_timed_out(self, subscription: Subscription) -> None:
        """A stream gave up on a write that took longer than its ``send_timeout``."""

    def closed(self, subscription: Subscription) -> None:
        """A stream ended, however it ended."""


def check_observer(observer: object) -> None:
    """Raise ``TypeError`` unless ``observer`` has every method of ``Observer``."""
    missing = [name for name in HOOKS if not callable(getattr(observer, name, None))]
    if missing:
        raise TypeError(
            f"metrics must be a PrometheusMetrics, an OpenTelemetryMetrics or an object with "
            f"the Observer methods; {observer!r} lacks {', '.join(missing)}"
        )
