"""Streams end when the server is told to stop: close_on_signal, real servers draining."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from _asgi_helpers import (
    make_app,
    stream_app,
    until,
    wait_live,
)
from _servers import ServerName, ServerProcess, open_stream, serve_in_subprocess, streaming
from sse_channels import ChannelStore
from sse_channels.asgi import SSEApp, close_on_signal
from sse_channels.testing import connect_sse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from _servers import Serve

pytestmark = pytest.mark.anyio


# -- close_on_signal ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="SIGUSR1 is POSIX")
async def test_close_on_signal_closes_the_store_and_chains_the_previous_handler() -> None:
    store = ChannelStore()
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        subscription = store.subscribe("news")
        async with close_on_signal(store, signals=[signal.SIGUSR1]):
            async with connect_sse(stream_app(subscription)) as stream:
                os.kill(os.getpid(), signal.SIGUSR1)
                await stream.wait_finished(timeout=2)
                assert stream.finished
            assert store.closed
            assert seen == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is not None
        os.kill(os.getpid(), signal.SIGUSR1)  # the test's own handler is back
        await until(lambda: len(seen) == 2)
    finally:
        signal.signal(signal.SIGUSR1, previous)


async def test_close_on_signal_leaves_signals_without_a_handler_alone() -> None:
    store = ChannelStore()
    before = signal.getsignal(signal.SIGUSR2)
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        async with close_on_signal(store, signals=[signal.SIGUSR2]):
            assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
        assert not store.closed
    finally:
        signal.signal(signal.SIGUSR2, before)
        await store.aclose()


async def test_real_server_stops_promptly_once_the_store_is_closed(serve: Serve) -> None:
    store = ChannelStore()
    with serve(make_app(store)) as server:
        async with streaming(server, "/?channel=news", headers={"x-user": "alice"}) as stream:
            await wait_live(server, store, 1, 2)
            await server.arun(store.aclose)
            await stream.read_to_end(timeout=2)
            assert stream.ended
            # An idle keep-alive connection would hold hypercorn for its graceful_timeout.
            await stream.aclose()
            took = await anyio.to_thread.run_sync(server.stop)
            assert took < 3.0


async def test_real_server_stop_without_closing_the_store_cancels_streams_after_grace(
    server_kind: tuple[ServerName, str], serve: Serve
) -> None:
    """The fallback: servers drain before the lifespan runs, then cancel what is left.

    Nothing closes the store before the server stops: it waits for its graceful timeout,
    cancels the stream (the subscription is released by the cancellation), and only then
    runs the lifespan shutdown, which closes the store.
    """
    server_name, _ = server_kind
    store = ChannelStore()
    grace = (
        {"timeout_graceful_shutdown": 0.5}
        if server_name == "uvicorn"
        else {"graceful_timeout": 0.5}
    )
    with serve(make_app(store), options=grace) as server:
        async with streaming(server, "/?channel=news", headers={"x-user": "alice"}) as stream:
            await wait_live(server, store, 1, 2)
            took = await anyio.to_thread.run_sync(server.stop)
            assert 0.4 <= took < 3.0
            assert store.closed
            assert store.statistics().subscribers == 0
            await stream.read_to_end(timeout=2)
            # Cancelled, not ended: the body has no final chunk, the connection is dropped.
            assert stream.closed
            assert not stream.ended


SHUTDOWN_APP = "test_asgi_shutdown:shutdown_app"


def _shutdown_app() -> Any:
    """A Starlette app whose lifespan closes the store on SIGTERM (``close_on_signal``)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    store = ChannelStore()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with store, close_on_signal(store):
            yield

    async def ready(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/", ready), Mount("/events", SSEApp(store, "news", heartbeat=0.2))],
        lifespan=lifespan,
    )


shutdown_app = _shutdown_app()


def stop_signal(server_kind: tuple[ServerName, str]) -> tuple[signal.Signals, tuple[str, ...]]:
    """The signal that stops the server, and the arguments that make it stop on it."""
    server_name, _ = server_kind
    if server_name == "uvicorn":
        return signal.SIGTERM, ()
    return signal.SIGINT, ("--workers", "0")


async def assert_the_signal_ends_three_streams(
    server: ServerProcess, path: str, signum: signal.Signals
) -> None:
    """Three open streams, then ``signum``: each ends cleanly, the server exits within 3 s."""
    streams = [await open_stream(server.host, server.port, path) for _ in range(3)]
    try:
        for stream in streams:
            await stream.wait_comments(1)
        began = time.monotonic()
        server.send_signal(signum)
        for stream in streams:
            await stream.read_to_end(timeout=3)
            assert stream.ended  # a clean end of the chunked body (its final chunk), not a reset
            await stream.aclose()  # as a browser would, finding the server gone
        took = await anyio.to_thread.run_sync(server.wait)
        assert time.monotonic() - began < 3.0, server.output
        assert took < 3.0
    finally:
        for stream in streams:
            await stream.aclose()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics are POSIX")
async def test_real_server_shutdown_signal_ends_open_streams_and_the_server_exits(
    server_kind: tuple[ServerName, str],
) -> None:
    """Graceful shutdown: the server's lifespan closes the store on the signal, no patching.

    uvicorn handles SIGTERM in the serving process. hypercorn's trio worker handles only
    Ctrl-C (SIGINT), and only when it serves in its main process (``--workers 0``); with
    worker processes the signal reaches the supervisor alone (see docs/deployment.md).
    """
    server_name, backend = server_kind
    signum, args = stop_signal(server_kind)
    with serve_in_subprocess(
        SHUTDOWN_APP, server=server_name, backend=backend, args=args
    ) as server:
        await assert_the_signal_ends_three_streams(server, "/events/", signum)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics are POSIX")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # granian runs its own loop: one client run
async def test_real_server_granian_sigterm_ends_open_streams_and_the_server_exits(
    anyio_backend: str,
) -> None:
    """granian passes SIGTERM on to its workers; the store closes and the streams end."""
    pytest.importorskip("granian")
    with serve_in_subprocess(SHUTDOWN_APP, server="granian") as server:
        streams = [await open_stream(server.host, server.port, "/events/") for _ in range(3)]
        try:
            for stream in streams:
                await stream.wait_comments(1)
            server.send_signal(signal.SIGTERM)
            for stream in streams:
                await stream.read_to_end(timeout=3)
                assert stream.ended
                await stream.aclose()
            assert await anyio.to_thread.run_sync(server.wait) < 3.0
        finally:
            for stream in streams:
                await stream.aclose()


#: SSEApp as the whole app: its own lifespan runs the store and closes it on the signal.
sse_app_alone = SSEApp(ChannelStore(), "news", heartbeat=0.2)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics are POSIX")
async def test_real_server_shutdown_signal_ends_the_streams_of_an_sseapp_served_alone(
    server_kind: tuple[ServerName, str],
) -> None:
    """uvicorn no longer tells streams about shutdown (it reverted that, PR #2913), and
    waits for them before the lifespan shutdown: SSEApp must end its own streams."""
    server_name, backend = server_kind
    signum, args = stop_signal(server_kind)
    with serve_in_subprocess(
        "test_asgi_shutdown:sse_app_alone", server=server_name, backend=backend, args=args
    ) as server:
        await assert_the_signal_ends_three_streams(server, "/", signum)
