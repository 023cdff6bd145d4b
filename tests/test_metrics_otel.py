"""OpenTelemetryMetrics: the scripted scenario read with the SDK's in-memory reader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)

from _metrics_scenario import EXPECTED, run_scenario
from sse_channels import ChannelStore
from sse_channels.metrics.otel import OpenTelemetryMetrics

if TYPE_CHECKING:
    from _servers import RunningServer

pytestmark = pytest.mark.anyio

Points = dict[tuple[str, frozenset[tuple[str, Any]]], float]

SYSTEM = ("messaging.system", "sse_channels")
SEND = {SYSTEM, ("messaging.operation.name", "send"), ("messaging.operation.type", "send")}
DELIVER = {
    SYSTEM,
    ("messaging.operation.name", "deliver"),
    ("messaging.operation.type", "receive"),
}

#: The scenario's measurements under their OpenTelemetry names and attributes.
OTEL_NAMES: dict[str, tuple[str, set[tuple[str, Any]]]] = {
    "streams_open": ("sse_channels.streams.open", {SYSTEM}),
    "events_sent": ("messaging.client.sent.messages", SEND),
    "events_delivered": ("messaging.client.consumed.messages", DELIVER),
    "events_replayed": ("sse_channels.events.replayed", {SYSTEM}),
    "gaps{unknown_id}": (
        "sse_channels.gaps",
        {SYSTEM, ("sse_channels.gap.reason", "unknown_id")},
    ),
    "slow_consumer_disconnects": ("sse_channels.slow_consumer.disconnects", {SYSTEM}),
    "revocations": ("sse_channels.revocations", {SYSTEM}),
    "write_timeouts": ("sse_channels.write_timeouts", {SYSTEM}),
    "subscriptions_closed{revoked}": (
        "sse_channels.subscriptions.closed",
        {SYSTEM, ("sse_channels.close.reason", "revoked")},
    ),
    "subscriptions_closed{slow_consumer}": (
        "sse_channels.subscriptions.closed",
        {SYSTEM, ("sse_channels.close.reason", "slow_consumer")},
    ),
    "subscriptions_closed{closed}": (
        "sse_channels.subscriptions.closed",
        {SYSTEM, ("sse_channels.close.reason", "closed")},
    ),
    "stream_duration.count": ("sse_channels.stream.duration", {SYSTEM}),
    "delivery_lag.count": ("sse_channels.delivery.lag", {SYSTEM}),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def points(reader: InMemoryMetricReader) -> tuple[Points, dict[str, Any]]:
    """Every data point by instrument name and attributes (a histogram: its count)."""
    found: Points = {}
    metrics: dict[str, Any] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "sse_channels"
            for metric in scope.metrics:
                metrics[metric.name] = metric
                for point in metric.data.data_points:
                    attributes = frozenset((point.attributes or {}).items())
                    if isinstance(point, HistogramDataPoint):
                        number: float = point.count
                    else:
                        assert isinstance(point, NumberDataPoint)
                        number = point.value
                    found[metric.name, attributes] = number
    return found, metrics


async def test_the_scripted_scenario_read_in_memory_has_every_measurement_exact() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    store = ChannelStore(max_lag=2, metrics=OpenTelemetryMetrics(meter_provider=provider))

    async def read(server: RunningServer) -> tuple[Points, dict[str, Any]]:
        return points(reader)

    found, metrics = await run_scenario(store, lambda app: app, read)
    provider.shutdown()
    assert set(OTEL_NAMES) == set(EXPECTED)
    for measurement, number in EXPECTED.items():
        name, attributes = OTEL_NAMES[measurement]
        assert found.get((name, frozenset(attributes)), 0) == number, measurement
    expected_keys = {(name, frozenset(attributes)) for name, attributes in OTEL_NAMES.values()}
    assert {key for key, number in found.items() if number and key not in expected_keys} == set()
    # Units and kinds as the conventions say.
    assert metrics["sse_channels.delivery.lag"].unit == "s"
    assert metrics["messaging.client.sent.messages"].unit == "{message}"
    assert metrics["sse_channels.streams.open"].data.is_monotonic is False
    lag = metrics["sse_channels.delivery.lag"].data.data_points[0]
    assert lag.explicit_bounds[:3] == (0.0005, 0.001, 0.0025)  # the advisory boundaries
    assert 0 < lag.sum < 5.0


async def test_a_channel_label_becomes_the_destination_template() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = OpenTelemetryMetrics(
        meter_provider=provider, channel_label=lambda name: name.partition(":")[0]
    )
    async with ChannelStore(metrics=metrics) as store:
        async with store.subscribe("news:sport") as one, store.subscribe("news:tech") as two:
            await store.send("news:sport", "a")
            await store.send("news:tech", "b")
            assert len(await one.receive_batch()) == len(await two.receive_batch()) == 1
        found, _ = points(reader)
    provider.shutdown()
    news = ("messaging.destination.template", "news")
    assert found["messaging.client.sent.messages", frozenset(SEND | {news})] == 2
    assert found["messaging.client.consumed.messages", frozenset(DELIVER | {news})] == 2
    assert not any(key[1] == frozenset(SEND) for key in found)  # never without the label


async def test_without_an_sdk_the_api_alone_measures_nothing_and_costs_no_error() -> None:
    store = ChannelStore(metrics=OpenTelemetryMetrics())  # the global provider: a no-op
    async with store, store.subscribe("news") as subscription:
        await store.send("news", "a")
        assert [e.data for e in await subscription.receive_batch()] == ["a"]
    assert store.statistics().events_delivered == 1


def test_the_otel_module_imports_the_api_package_only() -> None:
    import ast
    from pathlib import Path

    import sse_channels.metrics.otel as module

    tree = ast.parse(Path(module.__file__ or "").read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else str(node.module)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    otel = {name for name in imported if name.startswith("opentelemetry")}
    assert otel == {"opentelemetry", "opentelemetry.metrics"}
    assert not any(name.startswith("opentelemetry.sdk") for name in imported)
