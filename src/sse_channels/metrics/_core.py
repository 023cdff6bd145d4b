"""What both metrics classes share: the observer hooks turned into measurements.

A subclass says how to record (``_count``, ``_measure``, ``_gauge``); this class says what
and when, so that Prometheus and OpenTelemetry report the same numbers. Imports no metrics
library.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Literal

from .._gaps import GAP_EVENT

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._event import Event
    from .._subscription import Subscription

__all__ = ["LAG_WINDOW", "Measure", "Metric", "Recorder"]

#: The counters (each with the channel label when there is one, and ``extra`` as noted).
Metric = Literal[
    "events_sent",
    "events_delivered",
    "events_replayed",
    "gaps",  # extra: the gap's reason
    "slow_consumer_disconnects",
    "revocations",
    "subscriptions_closed",  # extra: the close reason
    "write_timeouts",
    "backend_reconnects",  # extra: the backend; no channel label
    "backend_errors",  # extra: the backend, and the error's type; no channel label
]
#: The histograms.
Measure = Literal["stream_duration", "delivery_lag", "backend_outage"]

#: Events whose time of arrival is remembered for the delivery lag, at most.
LAG_WINDOW = 65_536


class Recorder:
    """The hooks of the observer seam (``sse_channels._observe.Observer``), measured.

    Args:
        channel_label: maps a channel name to a bounded label (its namespace, say);
            ``None``: no per-channel label at all.
    """

    def __init__(self, channel_label: Callable[[str], str] | None = None) -> None:
        if channel_label is not None and not callable(channel_label):
            raise TypeError(f"channel_label must be callable or None, not {channel_label!r}")
        self._channel_label = channel_label
        #: When each recent event reached the log: ``id(event) -> (its event id, time)``.
        #: The event id tells a later object at the same address apart (ids are unique
        #: in a store), without keeping the event, and its data, alive.
        self._arrived: OrderedDict[int, tuple[str | None, float]] = OrderedDict()
        #: Open streams: when each opened, its label, and whether its first write is a replay.
        self._streams: dict[Subscription, tuple[float, str, bool]] = {}

    # -- what a subclass provides --------------------------------------------------------

    def _count(self, metric: Metric, amount: int, label: str, *extra: str) -> None:
        raise NotImplementedError

    def _measure(self, measure: Measure, value: float, label: str) -> None:
        raise NotImplementedError

    def _gauge(self, amount: int, label: str) -> None:
        """Add ``amount`` to the open streams gauge."""
        raise NotImplementedError

    # -- labels --------------------------------------------------------------------------

    def label(self, channel: str) -> str:
        """The channel label of ``channel`` (``""`` without a ``channel_label`` hook)."""
        if self._channel_label is None:
            return ""
        try:
            return str(self._channel_label(channel))
        except Exception:
            return "error"  # a hook must not end a stream; the odd label shows it failed

    def _label_of(self, subscription: Subscription) -> str:
        if self._channel_label is None:
            return ""
        names = subscription.channels or list(subscription.patterns)
        return self.label(names[0]) if names else ""

    # -- the store -------------------------------------------------------------------------

    def sent(self, channel: str) -> None:
        self._count("events_sent", 1, self.label(channel))

    def appended(self, event: Event) -> None:
        arrived = self._arrived
        arrived[id(event)] = (event.id, time.monotonic())
        if len(arrived) > LAG_WINDOW:
            arrived.popitem(last=False)

    # -- subscriptions ---------------------------------------------------------------------

    def delivered(self, subscription: Subscription, channel: str, count: int) -> None:
        self._count("events_delivered", count, self.label(channel))

    def handed_out(self, subscription: Subscription, batch: list[Event], replayed: int) -> None:
        delivered: dict[str, int] = {}
        for event in batch:
            channel = event.channel or ""
            if event.event == GAP_EVENT:
                self._count("gaps", 1, self.label(channel), _gap_reason(event))
            else:
                label = self.label(channel)
                delivered[label] = delivered.get(label, 0) + 1
        for label, count in delivered.items():
            self._count("events_delivered", count, label)
        if replayed:
            self._count("events_replayed", replayed, self._label_of(subscription))

    def ended(self, subscription: Subscription) -> None:
        reason = subscription.close_reason or "closed"
        label = self._label_of(subscription)
        self._count("subscriptions_closed", 1, label, reason)
        if reason == "revoked":
            self._count("revocations", 1, label)
        elif reason == "slow_consumer":
            self._count("slow_consumer_disconnects", 1, label)

    # -- streams ---------------------------------------------------------------------------

    def opened(self, subscription: Subscription) -> None:
        label = self._label_of(subscription)
        # Before its first read, a resumed subscription's last id is the one it resumed
        # from: its first batch is then the replay, whose lag is the client's absence.
        resumed = subscription.last_event_id is not None
        self._streams[subscription] = (time.monotonic(), label, resumed)
        self._gauge(1, label)

    def written(self, subscription: Subscription, batch: list[Event]) -> None:
        now = time.monotonic()
        stream = self._streams.get(subscription)
        if stream is not None and stream[2]:
            self._streams[subscription] = (stream[0], stream[1], False)
            return
        arrived = self._arrived
        for event in batch:
            found = arrived.get(id(event))
            if found is not None and found[0] == event.id and event.event != GAP_EVENT:
                self._measure("delivery_lag", now - found[1], self.label(event.channel or ""))

    def write_timed_out(self, subscription: Subscription) -> None:
        stream = self._streams.get(subscription)
        label = stream[1] if stream is not None else self._label_of(subscription)
        self._count("write_timeouts", 1, label)

    def closed(self, subscription: Subscription) -> None:
        stream = self._streams.pop(subscription, None)
        if stream is None:
            return
        opened, label, _ = stream
        # The duration first: a scrape that sees the stream gone also sees how long it ran.
        self._measure("stream_duration", time.monotonic() - opened, label)
        self._gauge(-1, label)

    # -- backends --------------------------------------------------------------------------

    def backend_reconnected(self, backend: str, outage: float) -> None:
        self._count("backend_reconnects", 1, "", backend)
        self._measure("backend_outage", outage, backend)

    def backend_error(self, backend: str, error: BaseException) -> None:
        self._count("backend_errors", 1, "", backend, type(error).__name__)


def _gap_reason(event: Event) -> str:
    try:
        reason = json.loads(event.data)["reason"]
    except (ValueError, KeyError, TypeError):
        return "unknown"
    return reason if isinstance(reason, str) else "unknown"
