"""OpenTelemetry metrics for a store and its streams, through the API package only.

Install with ``pip install "sse-channels[otel]"`` (``opentelemetry-api``). Like every
library instrumented for OpenTelemetry, this depends on the API alone: the application
chooses the SDK, the exporter and the ``MeterProvider``. Without an SDK configured the
instruments are no-ops::

    from sse_channels import ChannelStore
    from sse_channels.metrics.otel import OpenTelemetryMetrics

    store = ChannelStore(metrics=OpenTelemetryMetrics())  # the global MeterProvider

Sent and delivered events follow the ``messaging.*`` semantic conventions
(``messaging.client.sent.messages``, ``messaging.client.consumed.messages``, with
``messaging.system``, ``messaging.operation.*`` and, given a ``channel_label`` hook,
``messaging.destination.template``); what the conventions do not cover is named
``sse_channels.*``. docs/metrics.md lists them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, final

from opentelemetry import metrics as otel_metrics

from .._version import __version__
from ._core import Recorder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from opentelemetry.metrics import Counter, Histogram, MeterProvider, UpDownCounter

    from ._core import Measure, Metric

__all__ = ["DELIVERY_LAG_BOUNDARIES", "STREAM_DURATION_BOUNDARIES", "OpenTelemetryMetrics"]

#: Seconds from an event reaching the log to its write completing (advisory boundaries).
DELIVERY_LAG_BOUNDARIES: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Seconds a stream stayed open (advisory boundaries).
STREAM_DURATION_BOUNDARIES: Final = (
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
)  # fmt: skip

#: ``messaging.system`` of every measurement.
SYSTEM: Final = "sse_channels"

# The counters: (instrument name, unit, description, attributes of ``extra``, fixed ones).
_COUNTERS: Final[dict[Metric, tuple[str, str, str, tuple[str, ...], dict[str, str]]]] = {
    "events_sent": (
        "messaging.client.sent.messages",
        "{message}",
        "Events sent from this process (accepted by the backend).",
        (),
        {"messaging.operation.name": "send", "messaging.operation.type": "send"},
    ),
    "events_delivered": (
        "messaging.client.consumed.messages",
        "{message}",
        "Events handed to subscribers, one per event per subscriber (gap signals not included).",
        (),
        {"messaging.operation.name": "deliver", "messaging.operation.type": "receive"},
    ),
    "events_replayed": (
        "sse_channels.events.replayed",
        "{message}",
        "Events handed out on resume that were sent before the subscriber reconnected.",
        (),
        {},
    ),
    "gaps": (
        "sse_channels.gaps",
        "{gap}",
        "Gap signals handed to subscribers.",
        ("sse_channels.gap.reason",),
        {},
    ),
    "slow_consumer_disconnects": (
        "sse_channels.slow_consumer.disconnects",
        "{subscription}",
        "Subscriptions ended for falling behind (the 'disconnect' policy).",
        (),
        {},
    ),
    "revocations": (
        "sse_channels.revocations",
        "{subscription}",
        "Subscriptions ended by revoke().",
        (),
        {},
    ),
    "subscriptions_closed": (
        "sse_channels.subscriptions.closed",
        "{subscription}",
        "Subscriptions closed.",
        ("sse_channels.close.reason",),
        {},
    ),
    "write_timeouts": (
        "sse_channels.write_timeouts",
        "{stream}",
        "Streams given up on because one write took longer than send_timeout.",
        (),
        {},
    ),
    "backend_reconnects": (
        "sse_channels.backend.reconnects",
        "{reconnect}",
        "Times the backend connected again after losing its connection.",
        ("sse_channels.backend",),
        {},
    ),
    "backend_errors": (
        "sse_channels.backend.errors",
        "{error}",
        "Failed backend operations (some were retried).",
        ("sse_channels.backend", "error.type"),
        {},
    ),
}
_NO_CHANNEL: Final = frozenset({"backend_reconnects", "backend_errors"})


@final
class OpenTelemetryMetrics(Recorder):
    """A store's metrics as OpenTelemetry instruments; give it as ``metrics=``.

    The same measurements as
    [PrometheusMetrics][sse_channels.metrics.prometheus.PrometheusMetrics], under
    OpenTelemetry names (see the module docs). No attribute names a channel unless
    ``channel_label`` maps channels to a few values (``messaging.destination.template``).

    Args:
        meter_provider: where the instruments are created; default the global one
            (``opentelemetry.metrics.set_meter_provider``).
        channel_label: maps a channel name (or a ``*`` pattern) to a bounded label, e.g.
            ``lambda channel: channel.partition(":")[0]``; ``None``: no channel attribute.
        delivery_lag_boundaries: advisory bucket boundaries of the delivery lag, in seconds.
        stream_duration_boundaries: advisory bucket boundaries of the stream duration.

    Raises:
        TypeError: ``channel_label`` is not callable.
    """

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        channel_label: Callable[[str], str] | None = None,
        delivery_lag_boundaries: Sequence[float] = DELIVERY_LAG_BOUNDARIES,
        stream_duration_boundaries: Sequence[float] = STREAM_DURATION_BOUNDARIES,
    ) -> None:
        super().__init__(channel_label)
        meter = otel_metrics.get_meter("sse_channels", __version__, meter_provider=meter_provider)
        self._labelled = channel_label is not None
        self._counters: dict[Metric, tuple[Counter, tuple[str, ...], dict[str, str]]] = {}
        for metric, (name, unit, doc, extra, fixed) in _COUNTERS.items():
            counter = meter.create_counter(name, unit=unit, description=doc)
            self._counters[metric] = (counter, extra, {"messaging.system": SYSTEM, **fixed})
        self._open: UpDownCounter = meter.create_up_down_counter(
            "sse_channels.streams.open", unit="{stream}", description="Streams open now."
        )
        self._histograms: dict[Measure, Histogram] = {
            "delivery_lag": meter.create_histogram(
                "sse_channels.delivery.lag",
                unit="s",
                description="Seconds from an event reaching this process's log to its write.",
                explicit_bucket_boundaries_advisory=list(delivery_lag_boundaries),
            ),
            "stream_duration": meter.create_histogram(
                "sse_channels.stream.duration",
                unit="s",
                description="Seconds a stream stayed open.",
                explicit_bucket_boundaries_advisory=list(stream_duration_boundaries),
            ),
            "backend_outage": meter.create_histogram(
                "sse_channels.backend.outage.duration",
                unit="s",
                description="Seconds the backend was without a connection, per outage.",
            ),
        }
        self._base: dict[str, str] = {"messaging.system": SYSTEM}

    def _attributes(self, base: dict[str, str], label: str) -> dict[str, Any]:
        if not self._labelled:
            return base
        return {**base, "messaging.destination.template": label}

    def _count(self, metric: Metric, amount: int, label: str, *extra: str) -> None:
        counter, names, base = self._counters[metric]
        attributes = base if metric in _NO_CHANNEL else self._attributes(base, label)
        if extra:
            attributes = {**attributes, **dict(zip(names, extra, strict=True))}
        counter.add(amount, attributes)

    def _measure(self, measure: Measure, value: float, label: str) -> None:
        if measure == "backend_outage":
            attributes: dict[str, Any] = {**self._base, "sse_channels.backend": label}
        else:
            attributes = self._attributes(self._base, label)
        self._histograms[measure].record(value, attributes)

    def _gauge(self, amount: int, label: str) -> None:
        self._open.add(amount, self._attributes(self._base, label))
