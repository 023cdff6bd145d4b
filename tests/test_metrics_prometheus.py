"""PrometheusMetrics: a scripted scenario over a real uvicorn, scraped over HTTP, exact values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from _asgi_helpers import make_app, wait_live
from _metrics_scenario import EXPECTED, run_scenario
from _servers import open_stream, serve_in_thread
from sse_channels import ChannelStore
from sse_channels.metrics.prometheus import PrometheusMetrics, metrics_app, with_metrics

if TYPE_CHECKING:
    from _servers import RunningServer

pytestmark = pytest.mark.anyio

USER = {"x-user": "u"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn, as deployed


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(server: RunningServer, path: str = "/metrics") -> Samples:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; a labelled counter never touched has no sample, which reads 0."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


#: The scenario's measurements under their Prometheus names.
PROMETHEUS_NAMES = {
    "streams_open": ("sse_channels_streams_open", ()),
    "events_sent": ("sse_channels_events_sent_total", ()),
    "events_delivered": ("sse_channels_events_delivered_total", ()),
    "events_replayed": ("sse_channels_events_replayed_total", ()),
    "gaps{unknown_id}": ("sse_channels_gaps_total", (("reason", "unknown_id"),)),
    "slow_consumer_disconnects": ("sse_channels_slow_consumer_disconnects_total", ()),
    "revocations": ("sse_channels_revocations_total", ()),
    "write_timeouts": ("sse_channels_write_timeouts_total", ()),
    "subscriptions_closed{revoked}": (
        "sse_channels_subscriptions_closed_total",
        (("reason", "revoked"),),
    ),
    "subscriptions_closed{slow_consumer}": (
        "sse_channels_subscriptions_closed_total",
        (("reason", "slow_consumer"),),
    ),
    "subscriptions_closed{closed}": (
        "sse_channels_subscriptions_closed_total",
        (("reason", "closed"),),
    ),
    "stream_duration.count": ("sse_channels_stream_duration_seconds_count", ()),
    "delivery_lag.count": ("sse_channels_delivery_lag_seconds_count", ()),
}


async def test_a_scripted_scenario_scraped_over_http_has_every_counter_exact() -> None:
    """Connect, send, a slow consumer, a revoke, a gap, a replay, a write timeout, a leave."""
    registry = CollectorRegistry()
    store = ChannelStore(max_lag=2, metrics=PrometheusMetrics(registry=registry))

    before = parse(_exposition(registry))
    assert value(before, "sse_channels_streams_open") == 0
    assert value(before, "sse_channels_events_sent_total") == 0

    samples = await run_scenario(store, lambda app: with_metrics(app, registry=registry), scrape)
    assert set(PROMETHEUS_NAMES) == set(EXPECTED)
    for measurement, number in EXPECTED.items():
        assert samples.get(PROMETHEUS_NAMES[measurement], 0.0) == number, measurement
    # Nothing else counted anything: every other counter sample is zero.
    expected_keys = set(PROMETHEUS_NAMES.values())
    counted = {
        key
        for key, number in samples.items()
        if key[0].endswith("_total") and number and key not in expected_keys
    }
    assert counted == set()
    assert not any(key[0].startswith("sse_channels_backend_") and n for key, n in samples.items())
    # The histograms' sums are real durations.
    assert 0 < samples[("sse_channels_delivery_lag_seconds_sum", ())] < 5 * 1.0
    assert samples[("sse_channels_stream_duration_seconds_sum", ())] > 0


async def test_a_channel_label_hook_groups_channels_by_namespace() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(
        registry=registry, channel_label=lambda channel: channel.partition(":")[0]
    )
    store = ChannelStore(metrics=metrics)
    app = with_metrics(make_app(store, heartbeat=None), registry=registry)
    with serve_in_thread(app) as server:
        readers = [
            await open_stream(server.host, server.port, f"/?channel={name}", headers=USER)
            for name in ("news:sport", "news:tech", "chat:42")
        ]
        try:
            await wait_live(server, store, 3, 2)
            for name in ("news:sport", "news:tech", "chat:42"):
                await server.arun(store.send, name, "hi")
            for reader in readers:
                assert len(await reader.read_events(1)) == 1
            samples = await scrape(server)
        finally:
            for reader in readers:
                await reader.aclose()
    assert value(samples, "sse_channels_streams_open", channel_namespace="news") == 2
    assert value(samples, "sse_channels_streams_open", channel_namespace="chat") == 1
    assert value(samples, "sse_channels_events_sent_total", channel_namespace="news") == 2
    assert value(samples, "sse_channels_events_delivered_total", channel_namespace="news") == 2
    assert value(samples, "sse_channels_events_delivered_total", channel_namespace="chat") == 1
    names = {labels for name, labels in samples if name == "sse_channels_events_sent_total"}
    assert names == {(("channel_namespace", "news"),), (("channel_namespace", "chat"),)}


async def test_without_a_hook_no_metric_has_a_channel_label() -> None:
    registry = CollectorRegistry()
    store = ChannelStore(metrics=PrometheusMetrics(registry=registry))
    async with store:
        async with store.subscribe("news:sport") as subscription:
            await store.send("news:sport", "hi")
            assert (await subscription.receive_batch())[0].data == "hi"
        samples = parse(_exposition(registry))
    assert all("channel_namespace" not in dict(labels) for _, labels in samples)
    assert value(samples, "sse_channels_events_delivered_total") == 1


def _exposition(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


async def test_metrics_app_serves_the_registry_and_with_metrics_passes_the_rest_on() -> None:
    registry = CollectorRegistry()
    store = ChannelStore(metrics=PrometheusMetrics(registry=registry))
    inner = make_app(store, heartbeat=None)
    with serve_in_thread(with_metrics(inner, path="/stats", registry=registry)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            assert (await client.get("/stats")).text == _exposition(registry)
            assert (await client.get("/?channel=news")).status_code == 401  # SSEApp's answer
            assert (await client.get("/metrics?channel=news")).status_code == 401
    with serve_in_thread(metrics_app(registry)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            assert "sse_channels_streams_open 0.0" in (await client.get("/anything")).text


def test_with_metrics_refuses_a_path_without_a_slash() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError

    with pytest.raises(ValueError, match="must start with '/'"):
        with_metrics(app, path="metrics")


def test_a_store_refuses_metrics_without_the_observer_methods() -> None:
    with pytest.raises(TypeError, match="lacks sent, appended"):
        ChannelStore(metrics=object())  # type: ignore[arg-type]


def test_two_metrics_in_one_registry_are_refused() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry=registry)


async def test_the_channel_label_hook_failing_labels_it_error_and_streams_go_on() -> None:
    def broken(channel: str) -> str:
        raise RuntimeError("no")

    registry = CollectorRegistry()
    store = ChannelStore(metrics=PrometheusMetrics(registry=registry, channel_label=broken))
    async with store, store.subscribe("news") as subscription:
        await store.send("news", "hi")
        assert (await subscription.receive_batch())[0].data == "hi"
        samples = parse(_exposition(registry))
    assert value(samples, "sse_channels_events_sent_total", channel_namespace="error") == 1
    await anyio.sleep(0)


async def test_a_stream_ended_by_its_credential_expiry_counts_as_closed_expired() -> None:
    from datetime import datetime, timedelta, timezone

    from sse_channels.asgi import EventStreamResponse
    from sse_channels.testing import connect_sse

    registry = CollectorRegistry()
    async with ChannelStore(metrics=PrometheusMetrics(registry=registry)) as store:
        expires = datetime.now(timezone.utc) + timedelta(seconds=0.1)
        response = EventStreamResponse(store.subscribe("news"), heartbeat=None, expires=expires)
        async with connect_sse(response) as stream:
            await stream.wait_finished(timeout=2)
    samples = parse(_exposition(registry))
    closed = ("sse_channels_subscriptions_closed_total", (("reason", "expired"),))
    assert samples[closed] == 1
    assert value(samples, "sse_channels_stream_duration_seconds_count") == 1
    assert value(samples, "sse_channels_streams_open") == 0
