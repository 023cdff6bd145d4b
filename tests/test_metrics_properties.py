"""Property test: whatever a program does, the metrics agree with the store and the readers.

A random program sends, subscribes (live, or resuming from a real, stale or unknown id,
with either slow-consumer policy and a small ``max_lag``), drains, revokes and closes, on
a store with a short history so that gaps and slow consumers happen. Afterwards the
Prometheus counters must equal the store's own statistics, and the gap signals by reason
and the delivered events must equal what the readers actually received.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sse_channels import GAP_EVENT, ChannelStore, Event, SlowConsumerError, Subscription
from sse_channels.metrics.prometheus import PrometheusMetrics
from sse_channels.testing import drain

pytestmark = pytest.mark.anyio

CHANNELS = ["a", "b", "c:1"]

send = st.tuples(st.just("send"), st.sampled_from(CHANNELS), st.integers(1, 6))
subscribe = st.tuples(
    st.just("subscribe"),
    st.lists(st.sampled_from([*CHANNELS, "c:*"]), min_size=1, max_size=2),
    st.sampled_from(["live", "recent", "old", "old", "unknown"]),
    st.sampled_from(["disconnect", "drop_oldest"]),
    st.sampled_from([None, 2]),
    st.sampled_from(["k1", "k2"]),
)
drain_all = st.tuples(st.just("drain_all"))
# Sends, subscriptions and drains most often: they make the gaps, replays and slow
# consumers that the counters must agree on.
operation = st.one_of(
    send,
    send,
    subscribe,
    subscribe,
    drain_all,
    drain_all,
    st.tuples(st.just("drain"), st.integers(0, 20)),
    st.tuples(st.just("revoke"), st.sampled_from(["k1", "k2"])),
    st.tuples(st.just("close"), st.integers(0, 20)),
)


def counters(registry: CollectorRegistry) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found[sample.name, sample.labels.get("reason", "")] += int(sample.value)
    return found


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=st.lists(operation, min_size=8, max_size=40))
async def test_metrics_equal_the_store_statistics_and_what_readers_received(
    program: list[tuple[Any, ...]],
) -> None:
    registry = CollectorRegistry()
    store = ChannelStore(history=2, metrics=PrometheusMetrics(registry=registry))
    subscriptions: list[Subscription] = []
    received: list[Event] = []
    ids: list[str] = []
    sends = 0
    async with store:
        for op, *args in program:
            live = [s for s in subscriptions if not s.closed]
            if op == "send":
                channel, count = args
                for n in range(count):
                    event = await store.send(channel, str(n))
                    ids.append(str(event.id))
                    sends += 1
            elif op == "subscribe":
                names, resume, policy, lag, key = args
                last_id = {
                    "live": None,
                    "recent": ids[-1] if ids else None,
                    "old": ids[0] if ids else None,
                    "unknown": "zz-1",
                }[resume]
                subscriptions.append(
                    store.subscribe(
                        *names, last_event_id=last_id, slow_consumer=policy, max_lag=lag, key=key
                    )
                )
            elif op == "drain" and live:
                with contextlib.suppress(SlowConsumerError):
                    received += await drain(live[args[0] % len(live)])
            elif op == "drain_all":
                for subscription in live:
                    with contextlib.suppress(SlowConsumerError):
                        received += await drain(subscription)
            elif op == "revoke":
                store.revoke(key=args[0])
            elif op == "close" and live:
                live[args[0] % len(live)].close()
        for subscription in subscriptions:
            subscription.close()
        stats = store.statistics()
    found = counters(registry)
    gaps = Counter(json.loads(e.data)["reason"] for e in received if e.event == GAP_EVENT)
    assert found["sse_channels_events_sent_total", ""] == sends == stats.events_sent
    delivered = sum(1 for e in received if e.event != GAP_EVENT)
    assert found["sse_channels_events_delivered_total", ""] == delivered == stats.events_delivered
    assert found["sse_channels_events_replayed_total", ""] == stats.replayed
    assert {
        reason: n for (name, reason), n in found.items() if name == "sse_channels_gaps_total" and n
    } == dict(gaps)
    assert sum(gaps.values()) == stats.gaps
    slow = found["sse_channels_slow_consumer_disconnects_total", ""]
    assert slow == stats.slow_consumer_disconnects
    assert found["sse_channels_revocations_total", ""] == stats.revoked
    closed = sum(
        n for (name, _), n in found.items() if name == "sse_channels_subscriptions_closed_total"
    )
    assert closed == len(subscriptions)
    assert found["sse_channels_subscriptions_closed_total", "slow_consumer"] == slow
