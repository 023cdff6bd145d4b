"""The iterated engine (event_stream): for frameworks that own send."""

from __future__ import annotations

import time

import anyio
import pytest

from _asgi_helpers import OPENING
from sse_channels import ChannelStore, parse_sse
from sse_channels.asgi import HEARTBEAT, event_stream

pytestmark = pytest.mark.anyio


# -- the body iterator --------------------------------------------------------------------------


async def test_event_stream_yields_opening_then_one_chunk_per_batch() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription, retry=100)
        assert await body.__anext__() == b": ok\nretry: 100\n\n"
        sent = [await store.send("news", str(n)) for n in range(3)]
        assert await body.__anext__() == b"".join(e.encoded for e in sent)
        store.revoke(channel="news")
        assert [chunk async for chunk in body] == []
        assert subscription.close_reason == "revoked"


async def test_event_stream_heartbeats_when_the_consumer_waited_long_enough() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription, heartbeat=0.05)
        try:
            assert await body.__anext__() == OPENING
            assert await body.__anext__() == HEARTBEAT
            await store.send("news", "x")
            assert parse_sse(await body.__anext__())[0].data == "x"
        finally:
            await body.aclose()
        assert subscription.closed


async def test_event_stream_ends_after_max_lifetime() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        began = time.monotonic()
        chunks = [
            chunk
            async for chunk in event_stream(
                subscription, heartbeat=0.05, max_lifetime=0.2, lifetime_jitter=0
            )
        ]
        assert 0.18 <= time.monotonic() - began < 1.0
        assert chunks[0] == OPENING
        assert set(chunks[1:]) == {HEARTBEAT}
        assert subscription.closed


async def test_event_stream_closes_the_subscription_when_the_consumer_is_cancelled() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription)

        async def consume() -> None:
            async for _ in body:
                pass

        with anyio.move_on_after(0.05):
            await consume()
        await body.aclose()
        assert subscription.closed


async def test_event_stream_ends_a_slow_consumer_quietly() -> None:
    async with ChannelStore(history=2) as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription)
        await body.__anext__()
        for n in range(5):
            await store.send("news", str(n))
        assert [chunk async for chunk in body] == []
        assert subscription.close_reason == "slow_consumer"


async def test_event_stream_closed_before_its_first_chunk_releases_the_subscription() -> None:
    # A framework may drop the response before reading it (client gone at once): an async
    # generator that never started cannot run its finally, so the body must close it.
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription)
        await body.aclose()
        assert subscription.closed
        assert store.statistics().subscribers == 0
        assert [chunk async for chunk in body] == []
