"""How a served stream ends: the client leaving, the write deadline, errors, revocation."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from _asgi_helpers import live, stream_app, until
from sse_channels import ChannelStore
from sse_channels.testing import connect_sse

pytestmark = pytest.mark.anyio


async def test_client_gone_before_first_event_releases_the_subscription() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription)) as stream:
            await stream.disconnect()
        assert subscription.close_reason == "closed"
        assert live(store) == 0
        assert stream.events == []


async def test_client_gone_in_the_middle_of_a_write_releases_the_subscription() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription, send_timeout=None)) as stream:
            stream.stop_reading()
            await store.send("news", "stuck")
            await anyio.sleep(0.05)
            await stream.disconnect()
        assert subscription.closed
        assert live(store) == 0


async def test_write_deadline_releases_a_client_that_stopped_reading() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        app = stream_app(subscription, send_timeout=0.2, heartbeat=None)
        async with connect_sse(app) as stream:
            await until(lambda: len(stream.chunks) == 1)
            stream.stop_reading()
            await store.send("news", "never read")
            released = await until(lambda: subscription.closed, timeout=3)
            assert 0.15 <= released < 1.5
            await stream.wait_finished(timeout=1)
            assert not stream.finished  # abandoned, not ended: the server drops the connection
        assert live(store) == 0


async def test_write_deadline_applies_to_heartbeats_too() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        app = stream_app(subscription, send_timeout=0.2, heartbeat=0.05)
        async with connect_sse(app) as stream:
            await until(lambda: len(stream.chunks) == 1)
            stream.stop_reading()
            await until(lambda: subscription.closed, timeout=3)
            await stream.wait_finished(timeout=1)


async def test_send_raising_oserror_ends_the_response_quietly() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: Any) -> None:
            sent.append(message)
            if len(sent) == 3:
                raise OSError("connection reset")

        await store.send("news", "x")
        await stream_app(subscription)({"type": "http"}, receive, send)
        assert len(sent) == 3
        assert subscription.closed


async def test_an_exception_in_send_propagates_unwrapped_and_releases() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")

        async def receive() -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: Any) -> None:
            raise KeyError("broken server")

        with pytest.raises(KeyError, match="broken server"):
            await stream_app(subscription)({"type": "http"}, receive, send)
        assert subscription.closed


async def test_cancelling_the_response_releases_the_subscription() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        with anyio.move_on_after(0.1):
            async with connect_sse(stream_app(subscription)) as stream:
                await anyio.sleep_forever()
        await stream.wait_finished(timeout=1)
        assert subscription.closed


async def test_revocation_ends_the_stream_cleanly() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news", key="alice")
        other = store.subscribe("news", key="bob")
        async with connect_sse(stream_app(subscription)) as a, connect_sse(stream_app(other)) as b:
            await store.send("news", "before")
            await a.read_events(1)
            assert store.revoke(key="alice") == 1
            await a.wait_finished(timeout=1)
            assert a.finished
            assert subscription.close_reason == "revoked"
            assert not b.app_done
            await store.send("news", "after")
            assert [e.data for e in await b.read_events(2)] == ["before", "after"]


async def test_closing_the_store_ends_every_stream_cleanly() -> None:
    store = ChannelStore()
    subscriptions = [store.subscribe("news") for _ in range(3)]
    async with (
        connect_sse(stream_app(subscriptions[0])) as a,
        connect_sse(stream_app(subscriptions[1])) as b,
        connect_sse(stream_app(subscriptions[2])) as c,
    ):
        await store.aclose()
        for stream in (a, b, c):
            await stream.wait_finished(timeout=1)
            assert stream.finished
    assert {s.close_reason for s in subscriptions} == {"store_closed"}


async def test_a_slow_consumer_ends_the_stream_so_the_client_resumes() -> None:
    async with ChannelStore(history=3) as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription, send_timeout=None)) as stream:
            await until(lambda: len(stream.chunks) == 1)
            stream.stop_reading()
            await store.send("news", "0")
            await anyio.sleep(0.05)
            for n in range(1, 10):
                await store.send("news", str(n))
            stream.resume_reading()
            await stream.wait_finished()
            assert stream.finished
            assert subscription.close_reason == "slow_consumer"
            assert [e.data for e in stream.events] == ["0"]
