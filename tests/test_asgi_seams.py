"""The engine's seams for later work: an observer (metrics) and a per-stream end (expiry)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from _asgi_helpers import OPENING, until
from sse_channels import ChannelStore
from sse_channels.asgi import EventStream, EventStreamResponse, SSEApp, StreamOptions, event_stream
from sse_channels.testing import connect_sse

if TYPE_CHECKING:
    from sse_channels import Subscription
    from sse_channels._types import Message, Scope

pytestmark = pytest.mark.anyio


class Recorder:
    """A StreamObserver that writes down what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def opened(self, subscription: Subscription) -> None:
        self.calls.append(("opened", subscription.close_reason))

    def closed(self, subscription: Subscription) -> None:
        self.calls.append(("closed", subscription.close_reason))

    def write_timed_out(self, subscription: Subscription) -> None:
        self.calls.append(("write_timed_out", subscription.close_reason))


async def test_observer_is_told_when_a_served_stream_opens_and_closes() -> None:
    recorder = Recorder()
    async with ChannelStore() as store:
        app = SSEApp(store, "news", observer=recorder)
        async with connect_sse(app) as stream:
            await stream.wait_comments(1)
            assert recorder.calls == [("opened", None)]
            store.revoke(channel="news")
            await stream.wait_finished(timeout=2)
        assert recorder.calls == [("opened", None), ("closed", "revoked")]


async def test_observer_is_told_of_a_write_that_timed_out() -> None:
    recorder = Recorder()
    async with ChannelStore() as store:
        options = StreamOptions(heartbeat=None, send_timeout=0.2, observer=recorder)
        subscription = store.subscribe("news")
        async with connect_sse(EventStreamResponse(subscription, options)) as stream:
            await stream.wait_comments(1)
            stream.stop_reading()
            await store.send("news", "never read")
            await until(lambda: len(recorder.calls) == 3, timeout=3)
        assert recorder.calls == [
            ("opened", None),
            ("write_timed_out", "closed"),
            ("closed", "closed"),
        ]


async def test_observer_is_told_when_an_iterated_stream_opens_and_closes() -> None:
    recorder = Recorder()
    async with ChannelStore() as store:
        body = event_stream(store.subscribe("news"), observer=recorder)
        assert recorder.calls == []  # not before the framework starts reading
        assert await body.__anext__() == OPENING
        await body.aclose()
        await body.aclose()
        assert recorder.calls == [("opened", None), ("closed", "closed")]


async def test_a_head_request_is_never_reported_as_a_stream() -> None:
    recorder = Recorder()
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        response = EventStreamResponse(subscription, observer=recorder)
        async with connect_sse(response, method="HEAD") as stream:
            await stream.wait_finished(timeout=2)
        assert recorder.calls == []
        assert subscription.closed


async def test_ends_in_ends_a_stream_before_its_max_lifetime() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        response = EventStreamResponse(subscription, heartbeat=None, max_lifetime=60, ends_in=0.2)
        began = time.monotonic()
        async with connect_sse(response) as stream:
            await stream.wait_finished(timeout=2)
            assert stream.finished  # a clean end: the browser reconnects and is checked again
        assert 0.15 <= time.monotonic() - began < 1.5
        assert subscription.closed


async def test_ends_in_cannot_lengthen_max_lifetime() -> None:
    async with ChannelStore() as store, store.subscribe("news") as subscription:
        stream = EventStream(
            subscription, StreamOptions(max_lifetime=1, lifetime_jitter=0), ends_in=60
        )
        assert stream.ends_at is not None
        assert stream.ends_at - time.monotonic() <= 1.0


async def test_the_served_stream_runs_one_task_beside_the_writer() -> None:
    """Capacity: a served stream costs the caller's task and one watchdog, nothing more."""
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        tasks: list[Any] = []

        async def receive() -> Message:
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: Message) -> None:
            pass

        scope: Scope = {"type": "http"}

        async with anyio.create_task_group() as group:
            before = len(anyio.get_running_tasks())
            group.start_soon(EventStream(subscription, StreamOptions()).serve, scope, receive, send)
            await anyio.sleep(0.05)
            tasks = anyio.get_running_tasks()
            assert len(tasks) - before == 2  # the serving task and its watchdog
            group.cancel_scope.cancel()
        assert subscription.closed
