"""Prometheus metrics for a store and its streams, and a ``/metrics`` endpoint for raw ASGI.

Install with ``pip install "sse-channels[prometheus]"`` (``prometheus_client``). This is
the only module of ours that imports it, and only when you import it::

    from sse_channels import ChannelStore
    from sse_channels.metrics.prometheus import PrometheusMetrics, with_metrics

    store = ChannelStore(metrics=PrometheusMetrics())
    app = with_metrics(SSEApp(store, "news"))  # GET /metrics: the text exposition format

Under gunicorn (or any server with several worker processes) set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the workers start: each worker
writes its values there, and ``/metrics`` of any worker answers with the sums (open streams
are a ``livesum`` gauge: the workers alive now). See docs/metrics.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final, final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from ._core import Recorder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._types import ASGIApp, Receive, Scope, Send
    from ._core import Measure, Metric

__all__ = [
    "CHANNEL_LABEL",
    "DELIVERY_LAG_BUCKETS",
    "STREAM_DURATION_BUCKETS",
    "PrometheusMetrics",
    "metrics_app",
    "with_metrics",
]

#: Seconds from an event reaching the log to its write completing.
DELIVERY_LAG_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Seconds a stream stayed open.
STREAM_DURATION_BUCKETS: Final = (
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
)  # fmt: skip
_OUTAGE_BUCKETS: Final = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

#: The channel label's name, present only with a ``channel_label`` hook.
CHANNEL_LABEL: Final = "channel_namespace"

_COUNTERS: Final[dict[Metric, tuple[str, str, tuple[str, ...]]]] = {
    "events_sent": ("events_sent", "Events sent from this process (accepted by the backend).", ()),
    "events_delivered": (
        "events_delivered",
        "Events handed to subscribers, one per event per subscriber (gap signals not included).",
        (),
    ),
    "events_replayed": (
        "events_replayed",
        "Events handed out on resume that were sent before the subscriber reconnected.",
        (),
    ),
    "gaps": ("gaps", "Gap signals handed to subscribers, by reason.", ("reason",)),
    "slow_consumer_disconnects": (
        "slow_consumer_disconnects",
        "Subscriptions ended for falling behind (the 'disconnect' policy).",
        (),
    ),
    "revocations": ("revocations", "Subscriptions ended by revoke().", ()),
    "subscriptions_closed": (
        "subscriptions_closed",
        "Subscriptions closed, by close reason.",
        ("reason",),
    ),
    "write_timeouts": (
        "write_timeouts",
        "Streams given up on because one write took longer than send_timeout.",
        (),
    ),
}
_BACKEND_COUNTERS: Final[dict[Metric, tuple[str, str, tuple[str, ...]]]] = {
    "backend_reconnects": (
        "backend_reconnects",
        "Times the backend connected again after losing its connection.",
        ("backend",),
    ),
    "backend_errors": (
        "backend_errors",
        "Failed backend operations (some were retried), by error type.",
        ("backend", "error_type"),
    ),
}


@final
class PrometheusMetrics(Recorder):
    """A store's metrics in a ``prometheus_client`` registry; give it as ``metrics=``.

    Measured (names start with ``prefix``; counters end in ``_total``): open streams (a
    gauge), events sent, delivered and replayed, gaps by reason, slow-consumer
    disconnects, revocations, subscriptions closed by reason, write-deadline timeouts,
    stream duration and delivery lag (histograms), backend reconnects, outages and errors.
    No metric has a per-channel label unless ``channel_label`` maps channels to a few
    values (label ``channel_namespace``).

    Make one per process (two in one registry would register the same names twice).

    Args:
        registry: where the metrics are registered; default the global
            ``prometheus_client.REGISTRY``, which ``metrics_app()`` serves.
        prefix: the start of every metric name.
        channel_label: maps a channel name (or a ``*`` pattern) to a bounded label, e.g.
            ``lambda channel: channel.partition(":")[0]``; ``None``: no channel label.
        delivery_lag_buckets: the delivery lag histogram's upper bounds, in seconds.
        stream_duration_buckets: the stream duration histogram's upper bounds, in seconds.

    Raises:
        TypeError: ``channel_label`` is not callable.
        ValueError: a metric of that name is already registered in ``registry``.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        prefix: str = "sse_channels",
        channel_label: Callable[[str], str] | None = None,
        delivery_lag_buckets: Sequence[float] = DELIVERY_LAG_BUCKETS,
        stream_duration_buckets: Sequence[float] = STREAM_DURATION_BUCKETS,
    ) -> None:
        super().__init__(channel_label)
        target = REGISTRY if registry is None else registry
        self.registry = target
        channel = (CHANNEL_LABEL,) if channel_label is not None else ()
        self._labelled = bool(channel)
        self._counters: dict[Metric, Counter] = {}
        for metric, (name, doc, extra) in _COUNTERS.items():
            self._counters[metric] = Counter(
                f"{prefix}_{name}", doc, (*channel, *extra), registry=target
            )
        for metric, (name, doc, extra) in _BACKEND_COUNTERS.items():
            self._counters[metric] = Counter(f"{prefix}_{name}", doc, extra, registry=target)
        self._open = Gauge(
            f"{prefix}_streams_open",
            "Streams open now (summed over live worker processes in multiprocess mode).",
            channel,
            registry=target,
            multiprocess_mode="livesum",
        )
        self._histograms: dict[Measure, Histogram] = {
            "delivery_lag": Histogram(
                f"{prefix}_delivery_lag_seconds",
                "Seconds from an event reaching this process's log to its write to a client.",
                channel,
                registry=target,
                buckets=tuple(delivery_lag_buckets),
            ),
            "stream_duration": Histogram(
                f"{prefix}_stream_duration_seconds",
                "Seconds a stream stayed open.",
                channel,
                registry=target,
                buckets=tuple(stream_duration_buckets),
            ),
            "backend_outage": Histogram(
                f"{prefix}_backend_outage_seconds",
                "Seconds the backend was without a connection, per outage.",
                ("backend",),
                registry=target,
                buckets=_OUTAGE_BUCKETS,
            ),
        }

    def _count(self, metric: Metric, amount: int, label: str, *extra: str) -> None:
        counter = self._counters[metric]
        if self._labelled and metric in _COUNTERS:
            counter.labels(label, *extra).inc(amount)
        elif extra:
            counter.labels(*extra).inc(amount)
        else:
            counter.inc(amount)

    def _measure(self, measure: Measure, value: float, label: str) -> None:
        histogram = self._histograms[measure]
        if measure == "backend_outage" or self._labelled:
            histogram.labels(label).observe(value)
        else:
            histogram.observe(value)

    def _gauge(self, amount: int, label: str) -> None:
        (self._open.labels(label) if self._labelled else self._open).inc(amount)


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def metrics_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """An ASGI app that answers every HTTP request with the metrics, in the text format.

    Args:
        registry: what to serve; default the global ``REGISTRY``, or, when
            ``PROMETHEUS_MULTIPROC_DIR`` is set, the values of every worker process
            (read from that directory at each request).
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        source: CollectorRegistry = REGISTRY if registry is None else registry
        if registry is None and _multiprocess_dir() is not None:
            source = CollectorRegistry()
            MultiProcessCollector(source)  # type: ignore[no-untyped-call]
        body = generate_latest(source)
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head = scope.get("method") == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    return app


def with_metrics(
    app: ASGIApp, *, path: str = "/metrics", registry: CollectorRegistry | None = None
) -> ASGIApp:
    """``app``, with requests for ``path`` answered by ``metrics_app(registry)``.

    Every other request, and the lifespan, goes to ``app`` unchanged.

    Raises:
        ValueError: ``path`` does not start with ``/``.
    """
    if type(path) is not str or not path.startswith("/"):
        raise ValueError(f"path must start with '/', not {path!r}")
    metrics = metrics_app(registry)

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == path:
            await metrics(scope, receive, send)
        else:
            await app(scope, receive, send)

    return wrapped
