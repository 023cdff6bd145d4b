"""The served writer loop: batching, heartbeats, lifetime, HEAD (driven in process)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from _asgi_helpers import OPENING, live, stream_app, until
from sse_channels import ChannelStore, parse_sse
from sse_channels.asgi import HEARTBEAT, SSE_HEADERS
from sse_channels.testing import connect_sse

pytestmark = pytest.mark.anyio


# -- events, batching, heartbeats -------------------------------------------------------------


async def test_pending_events_are_written_in_one_send() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(stream_app(store.subscribe("news"))) as stream,
    ):
        await until(lambda: len(stream.chunks) == 1)
        sent = [await store.send("news", f"event {n}") for n in range(5)]
        events = await stream.read_events(5)
        assert [e.data for e in events] == [f"event {n}" for n in range(5)]
        assert stream.chunks[1:] == [b"".join(e.encoded for e in sent)]


async def test_events_sent_while_a_write_is_blocked_go_out_together_next() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(stream_app(store.subscribe("news"))) as stream,
    ):
        await until(lambda: len(stream.chunks) == 1)
        stream.stop_reading()
        first = await store.send("news", "first")
        await anyio.sleep(0.05)  # the writer is now blocked in send() with "first"
        rest = [await store.send("news", str(n)) for n in range(3)]
        stream.resume_reading()
        await stream.read_events(4)
        assert stream.chunks[1:] == [first.encoded, b"".join(e.encoded for e in rest)]


async def test_heartbeat_is_a_comment_after_each_idle_interval() -> None:
    # The clock starts before the stream does: the opening comment (the last write before
    # the first heartbeat) comes after it, so the lower bound holds however late this task
    # runs again after connecting, as it may under load.
    began = time.monotonic()
    async with (
        ChannelStore() as store,
        connect_sse(stream_app(store.subscribe("news"), heartbeat=0.1)) as stream,
    ):
        await stream.wait_comments(4)  # the opening comment and three heartbeats
        elapsed = time.monotonic() - began
        assert stream.chunks[1:] == [HEARTBEAT] * 3
        assert 0.28 <= elapsed < 5  # lower bound is the contract; upper only catches hangs


async def test_no_heartbeat_while_events_flow() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(stream_app(store.subscribe("news"), heartbeat=1.0)) as stream,
    ):
        for n in range(8):  # gaps far shorter than the heartbeat interval, even under load
            await store.send("news", str(n))
            await anyio.sleep(0.02)
        await stream.read_events(8)
        assert HEARTBEAT not in stream.chunks
        # Idle again: a heartbeat follows, after the last event and never inside one.
        await stream.wait_comments(2)
        assert stream.chunks[-1] == HEARTBEAT
        assert len(parse_sse(stream.body)) == 8


async def test_heartbeat_disabled_writes_nothing_when_idle() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(stream_app(store.subscribe("news"), heartbeat=None)) as stream,
    ):
        await anyio.sleep(0.2)
        assert stream.chunks == [OPENING]


# -- how a response ends ---------------------------------------------------------------------


async def test_max_lifetime_ends_the_response_cleanly_within_its_jitter() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        app = stream_app(subscription, max_lifetime=0.3, lifetime_jitter=0.5, heartbeat=None)
        began = time.monotonic()
        async with connect_sse(app) as stream:
            await stream.wait_finished(timeout=2)
            elapsed = time.monotonic() - began
            assert stream.finished
            assert 0.15 - 0.02 <= elapsed <= 0.45 + 0.3
            assert subscription.close_reason == "closed"


async def test_max_lifetime_ends_a_busy_response_too() -> None:
    async with ChannelStore() as store:
        app = stream_app(store.subscribe("news"), max_lifetime=0.2, lifetime_jitter=0)
        async with connect_sse(app) as stream:
            with anyio.fail_after(3):
                while not stream.finished:
                    await store.send("news", "tick")
                    await anyio.sleep(0.01)
            assert stream.events


@pytest.mark.parametrize("slow_write", [1, 2], ids=["opening-comment", "heartbeat"])
async def test_max_lifetime_that_passes_during_a_slow_comment_write_still_ends_the_response(
    slow_write: int,
) -> None:
    """The lifetime ends while the opening comment (or a heartbeat) is being written."""
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        heartbeat = None if slow_write == 1 else 0.1
        app = stream_app(
            subscription, heartbeat=heartbeat, send_timeout=None, max_lifetime=0.2,
            lifetime_jitter=0,
        )  # fmt: skip
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if len(sent) - 1 == slow_write:  # this write takes longer than the lifetime
                await anyio.sleep(0.4)

        with anyio.fail_after(3):  # without the fix: no end at all (heartbeat=None)
            await app({"type": "http", "method": "GET"}, receive, send)
        assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
        assert subscription.closed


async def test_head_request_gets_the_headers_alone_and_releases_the_subscription() -> None:
    """Starlette routes answer HEAD for GET: a HEAD response has no body to stream."""
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription), method="HEAD") as stream:
            await stream.wait_finished(timeout=2)
            assert stream.status == 200
            assert stream.headers["content-type"] == SSE_HEADERS["content-type"]
            assert stream.body == b""
        assert subscription.closed
        assert live(store) == 0
