"""Streams join presence by themselves (``presence=``) and leave on every ending path."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from _asgi_helpers import make_app, query_channel, until
from _servers import open_stream, serve_in_thread
from sse_channels import ChannelStore, Presence, PresenceView
from sse_channels.asgi import (
    EventStreamResponse,
    SSEApp,
    StreamOptions,
    close_on_signal,
    event_stream,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn


class Deployment:
    """An SSEApp with ``presence=`` under uvicorn in a thread; the user from ``x-user``."""

    def __init__(self, **store_options: Any) -> None:
        self.store = ChannelStore(**store_options)
        self.presence = Presence(self.store)

    async def count(self, server: Any, channel: str = "room") -> int:
        return int(await server.arun(self.presence.count, channel))

    async def until_count(self, server: Any, n: int, timeout: float = 3.0) -> float:
        began = anyio.current_time()
        with anyio.fail_after(timeout):
            while await self.count(server) != n:
                await anyio.sleep(0.01)
        return anyio.current_time() - began


async def connect(server: Any, user: str, channels: str = "room") -> Any:
    return await open_stream(
        server.host, server.port, f"/?channel={channels}", headers={"x-user": user}
    )


async def test_stream_joins_under_its_key_and_three_connections_count_once() -> None:
    deployment = Deployment()
    app = make_app(deployment.store, presence=deployment.presence)
    with serve_in_thread(app) as server:
        watcher = await connect(server, "watcher", "presence:room")
        (snapshot,) = await watcher.read_events(1)
        view = PresenceView()
        view.apply(snapshot.event, snapshot.data)
        assert view.members == {}  # the watcher reads presence:room only: it joins nothing
        tabs = [await connect(server, "alice") for _ in range(3)]
        await deployment.until_count(server, 1)
        members = await server.arun(deployment.presence.members, "room")
        assert members == {"alice": [{}, {}, {}]}
        for tab in tabs[:2]:
            await tab.aclose()
        await anyio.sleep(0.3)
        assert await deployment.count(server) == 1
        await tabs[2].aclose()
        await deployment.until_count(server, 0)
        events = await watcher.read_events(2)
        assert [e.event for e in events] == ["join", "leave"]
        await watcher.aclose()


async def test_stream_without_a_key_joins_nothing() -> None:
    deployment = Deployment()
    app = SSEApp(deployment.store, query_channel, presence=deployment.presence)
    with serve_in_thread(app) as server:
        stream = await connect(server, "alice")
        await stream.read_events(0)
        await anyio.sleep(0.2)
        assert await deployment.count(server) == 0
        assert (await server.acall(deployment.presence.statistics))["sessions"] == 0
        await stream.aclose()


async def test_stream_leaves_when_the_client_disconnects() -> None:
    deployment = Deployment()
    with serve_in_thread(make_app(deployment.store, presence=deployment.presence)) as server:
        stream = await connect(server, "alice")
        await deployment.until_count(server, 1)
        await stream.aclose()
        assert await deployment.until_count(server, 0) < 2


async def test_stream_leaves_when_it_is_revoked() -> None:
    deployment = Deployment()
    with serve_in_thread(make_app(deployment.store, presence=deployment.presence)) as server:
        stream = await connect(server, "alice")
        await deployment.until_count(server, 1)
        assert await server.acall(lambda: deployment.store.revoke(key="alice")) == 1
        await stream.read_to_end()  # ended cleanly by the server
        await stream.aclose()
        await deployment.until_count(server, 0)


async def test_stream_leaves_when_it_is_disconnected_as_a_slow_consumer() -> None:
    deployment = Deployment(max_lag=2)
    with serve_in_thread(make_app(deployment.store, presence=deployment.presence)) as server:
        stream = await connect(server, "alice")
        await deployment.until_count(server, 1)

        async def burst() -> None:  # five sends without a pause: the reader is 5 behind
            for n in range(5):
                await deployment.store.send("room", n)

        await server.arun(burst)
        await stream.read_to_end()
        await stream.aclose()
        await deployment.until_count(server, 0)
        stats = await server.acall(deployment.store.statistics)
        assert stats.slow_consumer_disconnects == 1


async def test_stream_leaves_at_its_max_lifetime() -> None:
    deployment = Deployment()
    app = make_app(
        deployment.store, presence=deployment.presence, max_lifetime=0.4, lifetime_jitter=0
    )
    with serve_in_thread(app) as server:
        stream = await connect(server, "alice")
        await deployment.until_count(server, 1)
        await stream.read_to_end()
        await stream.aclose()
        await deployment.until_count(server, 0)


async def test_stream_leaves_when_the_handler_crashes_while_writing() -> None:
    store = ChannelStore()
    async with store, Presence(store) as presence:
        subscription = store.subscribe("room", key="alice")
        response = EventStreamResponse(subscription, presence=presence, heartbeat=None)
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: Any) -> None:
            sent.append(message)
            if len(sent) == 3:
                raise RuntimeError("the handler broke")

        async def crash_later() -> None:
            await presence.flush()
            assert await presence.count("room") == 1
            await store.send("room", "boom")

        async with anyio.create_task_group() as group:
            group.start_soon(crash_later)
            with pytest.raises(RuntimeError, match="the handler broke"):
                await response({"type": "http", "method": "GET"}, receive, send)
        await presence.flush()
        assert await presence.count("room") == 0
        assert subscription.closed


async def test_iterated_stream_leaves_when_the_framework_drops_it_after_a_crash() -> None:
    store = ChannelStore()
    async with store, Presence(store) as presence:
        body = event_stream(store.subscribe("room", key="alice"), presence=presence)
        chunks: AsyncIterator[bytes] = body.__aiter__()
        await chunks.__anext__()  # the opening comment: the stream is open, and joined
        await presence.flush()
        assert await presence.members("room") == {"alice": [{}]}
        # The framework's handler fails here and drops the body, closing it.
        await body.aclose()
        await presence.flush()
        assert await presence.count("room") == 0


async def test_stream_with_a_key_that_is_no_member_id_is_refused_and_holds_nothing() -> None:
    store = ChannelStore()
    async with store, Presence(store) as presence:
        subscription = store.subscribe("room", key=" not trimmed")
        body = event_stream(subscription, presence=presence)
        with pytest.raises(ValueError, match="no space"):
            await body.__anext__()
        assert subscription.closed
        assert presence.statistics()["sessions"] == 0


async def test_stream_leaves_at_shutdown_and_the_leave_is_announced_first() -> None:
    # On the stop signal close_on_signal closes the presence before the store: the leave
    # is sent while the store still sends, then every stream ends. (SSEApp's lifespan
    # does this with the server's own signals.)
    store = ChannelStore()
    presence = Presence(store)
    heard: list[tuple[str | None, bool]] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        async with store, presence:
            store.listen("presence:room", lambda event: heard.append((event.event, store.closed)))
            subscription = store.subscribe("room", key="alice")
            body = event_stream(subscription, presence=presence)
            await body.__anext__()
            await presence.flush()
            assert heard == [("join", False)]
            async with close_on_signal(store, (signal.SIGUSR1,), first=[presence]):
                os.kill(os.getpid(), signal.SIGUSR1)
                with anyio.fail_after(2):
                    async for _ in body:
                        pass  # the stream ends: the store was closed
            assert subscription.closed
            assert presence.closed
            assert heard == [("join", False), ("leave", False)]
    finally:
        signal.signal(signal.SIGUSR1, previous)


async def test_one_presence_option_reaches_the_starlette_helper() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    from sse_channels.starlette import SSEResponse

    store = ChannelStore()
    presence = Presence(store)
    options = StreamOptions(presence=presence, heartbeat=0.2)

    async def events(request: Request) -> SSEResponse:
        subscription = store.subscribe("room", key=request.headers["x-user"])
        return SSEResponse(subscription, options=options)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with store, presence:
            yield

    app = Starlette(routes=[Route("/", events)], lifespan=lifespan)
    with serve_in_thread(app) as server:
        stream = await connect(server, "alice")
        await until(lambda: server.call(lambda: presence.statistics()["sessions"]) == 1)
        with anyio.fail_after(3):
            while await server.arun(presence.count, "room") != 1:
                await anyio.sleep(0.01)
        await stream.aclose()
        with anyio.fail_after(3):
            while await server.arun(presence.count, "room") != 0:
                await anyio.sleep(0.01)


def test_stream_options_refuse_a_presence_that_is_not_one() -> None:
    with pytest.raises(TypeError, match="Presence"):
        StreamOptions(presence="alice")  # type: ignore[arg-type]
