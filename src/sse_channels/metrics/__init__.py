"""Metrics for a store and its streams, off unless you ask for them.

Two implementations of the same measurements, each in its own module so that only the
library you chose is imported:

- ``sse_channels.metrics.prometheus``: ``PrometheusMetrics`` (``pip install
  "sse-channels[prometheus]"``), ``metrics_app()`` and ``with_metrics(app)`` for ``/metrics``;
  gunicorn's multiprocess mode works.
- ``sse_channels.metrics.otel``: ``OpenTelemetryMetrics`` (``pip install
  "sse-channels[otel]"``), through the OpenTelemetry API package only.

Give one to the store, ``ChannelStore(metrics=...)``: its subscriptions, every stream served
from them and its backend report to it. Without it nothing is measured and nothing of
this package is imported. docs/metrics.md lists every metric.
"""

from __future__ import annotations

__all__: list[str] = []
