"""The iterated engine (event_stream): for frameworks that own send."""

from __future__ import annotations

import time

import anyio
import pytest

from _asgi_helpers import OPENING, until
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


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_event_stream_gives_up_on_a_framework_write_that_takes_too_long(
    anyio_backend: str,
) -> None:
    """Django and Quart own send(): the engine's timer cancels their stuck writing task."""
    import asyncio

    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription, heartbeat=None, send_timeout=0.2)
        written: list[bytes] = []

        async def framework() -> None:  # writes each chunk; the second write never returns
            async for chunk in body:
                written.append(chunk)
                if len(written) == 2:
                    await asyncio.sleep(60)  # a send() to a client that stopped reading

        task = asyncio.ensure_future(framework())
        await until(lambda: written == [OPENING])
        await store.send("news", "stuck")
        began = time.monotonic()
        await asyncio.wait([task], timeout=3)
        assert task.cancelled()
        assert 0.15 <= time.monotonic() - began < 1.5
        assert subscription.close_reason == "closed"
        assert store.statistics().subscribers == 0


async def test_event_stream_write_deadline_is_not_armed_while_the_framework_keeps_up() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription, heartbeat=0.05, send_timeout=0.1)
        try:
            chunks = [await body.__anext__() for _ in range(6)]  # 0.25 s: past the deadline
            assert chunks == [OPENING, *[HEARTBEAT] * 5]
            assert not subscription.closed
        finally:
            await body.aclose()
