"""SSEApp under a real server on a loopback port: uvicorn on asyncio, hypercorn on trio."""

from __future__ import annotations

import gc
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

from _asgi_helpers import (
    make_app,
    wait_live,
)
from _servers import ServerName, open_stream, read_sse_then_leave, streaming
from sse_channels import ChannelStore
from sse_channels.asgi import SSE_HEADERS, SSEApp

if TYPE_CHECKING:
    from _servers import Serve

pytestmark = pytest.mark.anyio


# -- under a real server: uvicorn on asyncio, hypercorn on trio ------------------------------------


async def test_real_server_streams_store_events_and_releases_on_disconnect(serve: Serve) -> None:
    """httpx + httpx-sse reads events sent through the store; leaving frees it within 1 s."""
    store = ChannelStore()
    with serve(make_app(store)) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=5) as client,
            aconnect_sse(client, "GET", "/?channel=news", headers={"x-user": "alice"}) as source,
        ):
            assert source.response.headers["content-type"] == SSE_HEADERS["content-type"]
            assert "connection" not in source.response.headers
            await wait_live(server, store, 1, 2)
            for n in range(3):
                await server.arun(store.send, "news", {"n": n})
            received = list(await read_sse_then_leave(source, 3))
            assert [m.json() for m in received] == [{"n": 0}, {"n": 1}, {"n": 2}]
        released = await wait_live(server, store, 0, 1.0)
        assert released < 1.0


async def test_real_server_resume_with_last_event_id_gets_the_missed_events_once(
    serve: Serve,
) -> None:
    store = ChannelStore()
    with serve(make_app(store)) as server:
        headers = {"x-user": "alice"}
        first = await open_stream(server.host, server.port, "/?channel=news", headers=headers)
        await server.arun(store.send, "news", "one")
        await server.arun(store.send, "news", "two")
        seen = await first.read_events(2)
        await first.aclose()
        await wait_live(server, store, 0, 1.0)
        for word in ("three", "four", "five"):
            await server.arun(store.send, "news", word)
        resumed_from = seen[-1].id
        assert resumed_from is not None
        resumed = {**headers, "last-event-id": resumed_from}
        async with streaming(server, "/?channel=news", headers=resumed) as second:
            missed = await second.read_events(3)
            assert [e.data for e in missed] == ["three", "four", "five"]
            with pytest.raises(TimeoutError):
                await second.read_events(1, timeout=0.2)
            await server.arun(store.send, "news", "six")
            assert [e.data for e in await second.read_events(1)] == ["six"]
            assert [e.data for e in second.events] == ["three", "four", "five", "six"]


async def test_real_server_refused_request_gets_403_and_no_stream_byte(serve: Serve) -> None:
    store = ChannelStore()
    with serve(make_app(store)) as server:
        async with streaming(server, "/?channel=secret", headers={"x-user": "mallory"}) as response:
            body = await response.read_to_end()
        assert response.status == 403
        assert body == b"403 Forbidden\n"
        assert not response.headers["content-type"].startswith("text/event-stream")
        assert response.comments == []
        assert await server.acall(lambda: store.statistics().channels) == 0


async def test_real_server_revoked_users_stream_ends_within_a_second(serve: Serve) -> None:
    store = ChannelStore()
    with serve(make_app(store)) as server:
        async with (
            streaming(server, "/?channel=news", headers={"x-user": "alice"}) as alice,
            streaming(server, "/?channel=news", headers={"x-user": "bob"}) as bob,
        ):
            await wait_live(server, store, 2, 2)
            began = time.monotonic()
            assert await server.acall(lambda: store.revoke(key="alice")) == 1
            await alice.read_to_end(timeout=1.0)
            assert time.monotonic() - began < 1.0
            assert alice.ended  # the chunked body was terminated: a clean end
            await server.arun(store.send, "news", "still here")
            assert [e.data for e in await bob.read_events(1)] == ["still here"]


async def test_real_server_half_open_client_is_released_by_the_write_deadline(
    serve: Serve,
) -> None:
    """A client that stops reading but keeps its socket: the write deadline frees it."""
    store = ChannelStore()
    app = make_app(store, send_timeout=0.5, heartbeat=None)
    with serve(app, sndbuf=4096) as server:
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect((server.host, server.port))
        try:
            client.sendall(
                b"GET /?channel=news HTTP/1.1\r\nhost: x\r\nx-user: alice\r\n\r\n"
            )  # ...and never read again
            await wait_live(server, store, 1, 2)
            payload = "x" * 65536
            for _ in range(48):  # 3 MiB: far more than every buffer on the way can hold
                await server.arun(store.send, "news", payload)
            released = await wait_live(server, store, 0, 5.0)
            assert released < 0.5 + 2.0
            assert client.fileno() != -1  # the client never closed its socket
        finally:
            client.close()


async def test_real_server_1000_connect_disconnect_cycles_leave_nothing_behind(
    server_kind: tuple[ServerName, str], serve: Serve
) -> None:
    """Subscriptions, server tasks and traced memory are back where they were after 1,000 cycles.

    Half the clients leave right after the opening comment, half before reading anything
    (before the first event, possibly before the response started).
    """
    server_name, backend = server_kind
    store = ChannelStore()
    with serve(make_app(store)) as server:

        async def cycles(count: int, concurrency: int = 20) -> None:
            async def worker(worker_id: int) -> None:
                for n in range(count // concurrency):
                    stream = await open_stream(
                        server.host,
                        server.port,
                        "/?channel=news",
                        headers={"x-user": f"u{worker_id}"},
                        read_head=n % 2 == 0,
                    )
                    if n % 2 == 0:
                        await stream.wait_comments(1)
                    await stream.aclose()

            async with anyio.create_task_group() as group:
                for worker_id in range(concurrency):
                    group.start_soon(worker, worker_id)

        async def settled(most: int | None = None) -> int:
            """Wait for no subscriber and (at most ``most``) server tasks; return the count."""
            await wait_live(server, store, 0, 3.0)
            tasks = await server.atask_count()
            with anyio.move_on_after(3):  # connections closing down take a moment
                while most is not None and tasks > most:
                    await anyio.sleep(0.02)
                    tasks = await server.atask_count()
            return tasks

        idle_tasks = await server.atask_count()  # the server with no connection at all
        await cycles(100)  # warm up: imports, caches, free lists
        tasks_before = await settled(idle_tasks)
        gc.collect()
        # Live objects and pymalloc blocks of the whole process (client and server): cheap
        # enough to leave the cycles at full speed, unlike tracemalloc, and a leak of even
        # one small object per cycle would show as 1,000.
        objects_before, blocks_before = len(gc.get_objects()), sys.getallocatedblocks()
        began = time.monotonic()
        await cycles(1000)
        took = time.monotonic() - began
        tasks_after = await settled(tasks_before)
        gc.collect()
        objects = len(gc.get_objects()) - objects_before
        blocks = sys.getallocatedblocks() - blocks_before
        stats = store.statistics()
        print(
            f"\n{server_name}/{backend}: 1000 cycles in {took:.2f} s; server tasks "
            f"{tasks_before} -> {tasks_after}; growth: {objects} objects, {blocks} blocks; "
            f"subscribers {stats.subscribers}"
        )
        assert stats.subscribers == 0
        assert tasks_after <= tasks_before
        assert objects < 300
        assert blocks < 1000


async def test_real_server_head_gets_the_stream_headers_no_body_and_no_subscription(
    serve: Serve,
) -> None:
    """Issue 15.1: HEAD is answered wherever GET is, as uptime checks expect (RFC 9110)."""
    store = ChannelStore()
    with serve(make_app(store)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            response = await client.head("/?channel=news", headers={"x-user": "alice"})
            refused = await client.head("/?channel=secret", headers={"x-user": "mallory"})
        assert response.status_code == 200
        for name, value in SSE_HEADERS.items():
            assert response.headers[name] == value
        assert response.content == b""
        assert refused.status_code == 403
        stats = await server.acall(store.statistics)
        assert (stats.subscribers, stats.channels) == (0, 0)


def path_channel(scope: Any) -> str:
    """``/events/{name}``: the path parameter passed through, as a naive app would."""
    return str(scope["path"]).removeprefix("/events/")


async def test_real_server_pattern_in_the_path_is_refused_without_the_opt_in(
    serve: Serve,
) -> None:
    """Issue 15.2: ``/events/*`` must not read every channel through a path resolver."""
    store = ChannelStore()
    app = SSEApp(store, path_channel, heartbeat=0.2)
    with serve(app) as server:
        for path in ("/events/*", "/events/private:*"):
            async with streaming(server, path) as stream:
                body = await stream.read_to_end()
            assert stream.status == 400
            assert body == b"400 Bad Request\n"
            assert stream.headers["content-type"].startswith("text/plain")
            assert stream.comments == []
        stats = await server.acall(store.statistics)
        assert (stats.subscribers, stats.channels) == (0, 0)
        # A plain name through the same resolver still streams.
        async with streaming(server, "/events/news") as stream:
            await wait_live(server, store, 1, 2)
            await server.arun(store.send, "news", "plain")
            assert [e.data for e in await stream.read_events(1)] == ["plain"]


async def test_real_server_pattern_in_the_path_streams_with_the_opt_in(serve: Serve) -> None:
    store = ChannelStore()
    app = SSEApp(store, path_channel, patterns=True, heartbeat=0.2)
    with serve(app) as server:
        async with streaming(server, "/events/news:*") as stream:
            assert stream.status == 200
            await wait_live(server, store, 1, 2)
            await server.arun(store.send, "news:eu", "eu")
            await server.arun(store.send, "sport", "not matched")
            await server.arun(store.send, "news:us", "us")
            assert [e.data for e in await stream.read_events(2)] == ["eu", "us"]
