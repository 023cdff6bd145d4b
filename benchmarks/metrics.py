"""What metrics cost when they are on: the same streams without metrics, with Prometheus, with OTel.

Run from a clone::

    .venv/bin/python -m pip install -e ".[dev]"
    .venv/bin/python benchmarks/metrics.py [--streams N] [--events E] [--rounds R] [--quick]

N streams are served by the engine itself (``EventStream.serve`` with an ASGI ``send`` that
counts bytes and a ``receive`` that never disconnects), so every hook runs: the store's
(sent, appended), the subscriptions' (delivered), the engine's (opened, written with the
delivery lag of each event, closed). One publisher sends E events, yielding to the loop
after each. A trial ends when every stream has written every event; deliveries/s is N x E
over that time (and per CPU-second of the process, the steadier figure on a shared
machine). The rows, interleaved round by round in a fresh event loop each:

- metrics off: ``ChannelStore()``;
- Prometheus: ``ChannelStore(metrics=PrometheusMetrics(registry=CollectorRegistry()))``;
- OpenTelemetry: ``OpenTelemetryMetrics`` on an SDK ``MeterProvider`` with an in-memory
  reader (the cost of a real SDK; the API alone would be a no-op).

Metrics off against the commit before metrics existed is ``benchmarks/compare.py``'s job
(fanout and http); this script measures the price of turning them on. Prints medians as
a markdown table; writes nothing.
"""

from __future__ import annotations

import os
import sys

# Run as ``python benchmarks/<name>.py``, this directory comes first on sys.path, where
# http.py and redis.py would shadow the packages of those names that the peers import.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import gc
import statistics
import time
from typing import TYPE_CHECKING, Any

import anyio

from sse_channels import ChannelStore
from sse_channels.asgi import EventStream, StreamOptions

if TYPE_CHECKING:
    from collections.abc import Callable

CHANNEL = "bench"
PAYLOAD = '{"user":"alice","action":"price-change","item":{"sku":"A-1042","price":19.99}}'


def no_metrics() -> Any:
    return None


def prometheus() -> Any:
    from prometheus_client import CollectorRegistry

    from sse_channels.metrics.prometheus import PrometheusMetrics

    return PrometheusMetrics(registry=CollectorRegistry())


def opentelemetry() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from sse_channels.metrics.otel import OpenTelemetryMetrics

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetryMetrics(meter_provider=provider)


ROWS: dict[str, Callable[[], Any]] = {
    "metrics off": no_metrics,
    "PrometheusMetrics": prometheus,
    "OpenTelemetryMetrics (SDK)": opentelemetry,
}


async def trial(make: Callable[[], Any], streams: int, events: int) -> tuple[float, float]:
    """Wall and CPU seconds from the first send until every stream wrote every event."""
    metrics = make()
    # Without metrics, as before they existed: the row runs on an older commit too.
    store = (
        ChannelStore(history=events + 1)
        if metrics is None
        else ChannelStore(history=events + 1, metrics=metrics)
    )
    options = StreamOptions(heartbeat=None, send_timeout=None)
    done = anyio.Event()
    remaining = streams

    async def serve_one() -> None:
        nonlocal remaining
        blocks = -1  # the opening comment is a block too

        async def send(message: Any) -> None:
            nonlocal blocks, remaining
            blocks += message.get("body", b"").count(b"\n\n")  # one per event
            if blocks == events:
                remaining -= 1
                if remaining == 0:
                    done.set()

        async def receive() -> Any:
            await anyio.sleep_forever()

        stream = EventStream(store.subscribe(CHANNEL), options)
        await stream.serve({"type": "http", "method": "GET"}, receive, send)

    async with store, anyio.create_task_group() as group:
        for _ in range(streams):
            group.start_soon(serve_one)
        await anyio.sleep(0.05)  # every stream parked on its subscription
        began, cpu = time.perf_counter(), time.process_time()
        for _ in range(events):
            await store.send(CHANNEL, PAYLOAD)
            await anyio.sleep(0)
        await done.wait()
        elapsed = time.perf_counter() - began, time.process_time() - cpu
        group.cancel_scope.cancel()
    return elapsed


def run_trial(make: Callable[[], Any], streams: int, events: int) -> tuple[float, float]:
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(trial(make, streams, events))
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a second or two")
    parser.add_argument("--only", nargs="+", choices=list(ROWS), help="run these rows only")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.events, args.rounds = 50, 20, 1
    names = args.only or list(ROWS)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_number in range(args.rounds):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in order:
            results[name].append(run_trial(ROWS[name], args.streams, args.events))
    deliveries = args.streams * args.events
    base = statistics.median(cpu for _, cpu in results[names[0]])
    print(
        f"### {args.streams:,} streams, {args.events:,} events ({deliveries:,} deliveries), "
        f"{args.rounds} rounds, medians\n"
    )
    print(f"| metrics | deliveries/s | deliveries per CPU-second | CPU time ÷ {names[0]} |")
    print("|---|---:|---:|---:|")
    for name in names:
        wall = statistics.median(w for w, _ in results[name])
        cpu = statistics.median(c for _, c in results[name])
        print(
            f"| {name} | {deliveries / wall:,.0f} | {deliveries / cpu:,.0f} | {cpu / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
