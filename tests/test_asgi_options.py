"""sse_channels.asgi.StreamOptions: one validated value, the one place options are checked."""

from __future__ import annotations

import random
from typing import Any

import pytest

from _asgi_helpers import FakeSubscription
from sse_channels import ChannelStore
from sse_channels.asgi import EventStreamResponse, SSEApp, StreamOptions, event_stream

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"heartbeat": 0}, ValueError),
        ({"heartbeat": -1.0}, ValueError),
        ({"heartbeat": float("inf")}, ValueError),
        ({"heartbeat": True}, TypeError),
        ({"heartbeat": "15"}, TypeError),
        ({"send_timeout": 0}, ValueError),
        ({"max_lifetime": -5}, ValueError),
        ({"lifetime_jitter": 1.0}, ValueError),
        ({"lifetime_jitter": -0.1}, ValueError),
        ({"retry": -1}, ValueError),
        ({"retry": True}, TypeError),
        ({"status": 1000}, ValueError),
        ({"headers": {"x-bad": "a\r\nb"}}, ValueError),
        ({"headers": {"x-bad": 1}}, TypeError),
    ],
)
async def test_response_rejects_bad_options_at_the_call(
    options: dict[str, Any], error: type[Exception]
) -> None:
    async with ChannelStore() as store, store.subscribe("news") as subscription:
        with pytest.raises(error):
            EventStreamResponse(subscription, **options)


def test_lifetime_jitter_spreads_lifetimes_over_the_whole_range() -> None:
    random.seed(4)
    options = StreamOptions(max_lifetime=100.0, lifetime_jitter=0.2)
    lifetimes: list[float] = []
    for _ in range(200):
        lifetime = options.lifetime()
        assert lifetime is not None
        lifetimes.append(lifetime)
    assert 80.0 <= min(lifetimes) < 85.0
    assert 115.0 < max(lifetimes) <= 120.0


def test_lifetime_without_max_lifetime_is_none() -> None:
    assert StreamOptions().lifetime() is None


def test_event_stream_rejects_bad_options_at_the_call() -> None:
    with pytest.raises(ValueError):
        event_stream(FakeSubscription(), heartbeat=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"heartbeat": 0}, ValueError),
        ({"send_timeout": float("nan")}, ValueError),
        ({"max_lifetime": "60"}, TypeError),
        ({"lifetime_jitter": True}, TypeError),
        ({"retry": 1.5}, TypeError),
        ({"observer": object()}, TypeError),
        ({"heartbeats": 5}, TypeError),  # a misspelt name is refused, not ignored
    ],
)
def test_stream_options_refuse_bad_values_when_made(
    settings: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        StreamOptions(**settings)


def test_stream_options_are_frozen_and_compare_by_value() -> None:
    options = StreamOptions(heartbeat=5, retry=100)
    assert options == StreamOptions(heartbeat=5, retry=100)
    assert options.opening == b": ok\nretry: 100\n\n"
    with pytest.raises(AttributeError):
        options.heartbeat = 1  # type: ignore[misc]


async def test_every_front_takes_options_or_keywords_but_not_both() -> None:
    options = StreamOptions(heartbeat=5)
    async with ChannelStore() as store:
        fronts: list[Any] = [
            lambda *a, **k: EventStreamResponse(store.subscribe("news"), *a, **k),
            lambda *a, **k: event_stream(store.subscribe("news"), *a, **k),
            lambda *a, **k: SSEApp(store, "news", options=a[0] if a else None, **k),
        ]
        accepted = []
        for front in fronts:
            accepted += [front(options), front(heartbeat=5)]
            assert accepted[-2].options is options
            assert accepted[-1].options == options
            with pytest.raises(TypeError, match="not both"):
                front(options, retry=1)
            with pytest.raises(TypeError, match="StreamOptions"):
                front({"heartbeat": 5})
        # Only the accepted responses and bodies hold one: a refused one released its own.
        assert store.statistics().subscribers == 4
        for front_made in accepted[:4]:
            front_made.subscription.close()


def test_a_front_that_refuses_its_options_releases_the_subscription() -> None:
    subscription = FakeSubscription()
    with pytest.raises(ValueError):
        EventStreamResponse(subscription, max_lifetime=-1)  # type: ignore[arg-type]
    assert subscription.closed
