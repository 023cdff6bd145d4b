"""The Redis backend tells the store's metrics of reconnects and errors, and logs them.

The reader's connection is killed behind its back (``CLIENT KILL``); on a Redis of the
tests' own, clients are also paused for a moment, so that the outage has a length to see.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from _redis import RedisServer, redis_server, unique_prefix
from sse_channels import ChannelStore
from sse_channels.backends.redis import RedisBackend
from sse_channels.metrics.prometheus import PrometheusMetrics

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["redis_server"]  # the fixture, re-exported

pytestmark = pytest.mark.anyio

PAUSE_MS = 300


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix(redis_server: RedisServer) -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    with redis_server.client() as admin:
        keys = list(admin.scan_iter(match=f"{prefix}*"))
        if keys:
            admin.delete(*keys)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


async def test_a_reader_reconnect_is_counted_timed_and_logged_at_warning(
    redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sse_channels.backends.redis")
    registry = CollectorRegistry()
    backend = RedisBackend(redis_server.url, prefix=prefix, client_name="sse-metrics")
    store = ChannelStore(backend=backend, metrics=PrometheusMetrics(registry=registry))
    async with store:
        with redis_server.client() as admin:
            with anyio.fail_after(5):
                while not (ids := reader_ids(admin)):
                    await anyio.sleep(0.01)
            for client_id in ids:
                admin.client_kill_filter(_id=client_id)
            if redis_server.private:  # never pause a Redis that others share
                admin.client_pause(PAUSE_MS)
        with anyio.fail_after(10):
            while not (store.statistics().backend["connected"] and reconnected(caplog)):
                await anyio.sleep(0.01)
        async with store.subscribe("news") as subscription:  # and it works again
            await store.send("news", "after")
            with anyio.fail_after(5):
                assert [e.data for e in await subscription.receive_batch()] == ["after"]
    found = samples(registry)
    assert found[("sse_channels_backend_reconnects_total", (("backend", "redis"),))] == 1
    assert found[("sse_channels_backend_outage_seconds_count", (("backend", "redis"),))] == 1
    outage = found[("sse_channels_backend_outage_seconds_sum", (("backend", "redis"),))]
    errors = {
        labels: n
        for (name, labels), n in found.items()
        if name == "sse_channels_backend_errors_total"
    }
    assert sum(errors.values()) >= 1
    assert all(dict(labels)["backend"] == "redis" for labels in errors)
    assert store.statistics().backend["reconnects"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0].startswith("Redis reader lost its connection (")
    assert warnings[1] == f"Redis reader connected again after an outage of {outage:.3f} s"
    if redis_server.private:
        assert PAUSE_MS / 1000 * 0.8 <= outage < 5
    assert len(warnings) == 2  # one line per outage and one per recovery, not per attempt


def reader_ids(admin: object) -> list[int]:
    clients = admin.client_list()  # type: ignore[attr-defined]
    return [
        int(c["id"])
        for c in clients
        if c["name"].startswith("sse-metrics:") and c["name"].endswith(":read")
    ]


def reconnected(caplog: pytest.LogCaptureFixture) -> bool:
    return any("connected again" in r.getMessage() for r in caplog.records)


async def test_killed_connections_are_counted_as_backend_errors_by_type(
    redis_server: RedisServer, prefix: str
) -> None:
    registry = CollectorRegistry()
    backend = RedisBackend(redis_server.url, prefix=prefix)
    store = ChannelStore(backend=backend, metrics=PrometheusMetrics(registry=registry))
    async with store:
        await store.send("news", "x" * 10)
        with redis_server.client() as admin:
            admin.client_kill_filter(_type="normal", skipme=True)  # the sending link too
        await store.send("news", "again")  # retried on a new connection
    errors = {
        dict(labels)["error_type"]: n
        for (name, labels), n in samples(registry).items()
        if name == "sse_channels_backend_errors_total"
    }
    assert errors
    assert all(name.endswith("Error") for name in errors)
