"""Two uvicorn server processes on two ports share one Redis; clients read real SSE streams.

Each server is ``_redis.make_app``: a store on ``RedisBackend`` in its lifespan, an
``SSEApp`` at ``/events`` and a ``/send`` endpoint. The test process is a third party: it
sends through either server (or its own store), reads the streams as a browser would, and
kills the servers' Redis connections behind their back.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio
import httpx
import pytest

from _redis import (
    APP_CLIENT_NAME,
    APP_PREFIX_ENV,
    APP_URL_ENV,
    RedisServer,
    redis_server,
    unique_prefix,
)
from _servers import RawHTTPStream, ServerProcess, open_stream, serve_in_subprocess
from sse_channels import ChannelStore, Event
from sse_channels.backends.redis import RedisBackend

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    import redis

__all__ = ["redis_server"]  # the fixture, re-exported

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py is asyncio-only


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def servers(redis_server: RedisServer, prefix: str) -> Iterator[tuple[ServerProcess, ...]]:
    """Two uvicorn processes on two ports, both on the test's Redis and prefix."""
    env = {APP_URL_ENV: redis_server.url, APP_PREFIX_ENV: prefix}
    with ExitStack() as stack:
        yield tuple(
            stack.enter_context(
                serve_in_subprocess("_redis:make_app", args=("--factory",), env=env)
            )
            for _ in range(2)
        )


@asynccontextmanager
async def stream(
    server: ServerProcess, channel: str, last_event_id: str | None = None
) -> AsyncIterator[RawHTTPStream]:
    headers = {"last-event-id": last_event_id} if last_event_id else {}
    client = await open_stream(
        server.host, server.port, f"/events?channel={channel}", headers=headers
    )
    try:
        assert client.status == 200
        yield client
    finally:
        await client.aclose()


async def send(http: httpx.AsyncClient, server: ServerProcess, channel: str, data: str) -> str:
    response = await http.post(f"{server.url}/send?channel={channel}&data={quote(data)}")
    response.raise_for_status()
    return response.text


def n_of(event: Event) -> int:
    assert event.id is not None
    return int(event.id.rpartition("-")[2])


@contextmanager
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as client:
        yield client


async def readers_reading(redis_admin: redis.Redis, count: int) -> list[dict[str, str]]:
    """The servers' reader connections, once each of the ``count`` is connected and reading.

    A kill must find every reader in the middle of reading (its last command ``XREAD``):
    one still reconnecting after the previous kill has no connection yet, or one still in
    its first sync, whose loss counts as a failed attempt and not as a lost connection.
    Killing then would count a kill that did not hit that server.
    """
    listing: list[dict[str, str]] = []
    with anyio.move_on_after(30):
        while True:
            listing = redis_admin.client_list()
            readers = [
                entry
                for entry in listing
                if entry["name"].startswith(APP_CLIENT_NAME) and entry["name"].endswith(":read")
            ]
            if len(readers) == count and all(entry["cmd"] == "xread" for entry in readers):
                return readers
            await anyio.sleep(0.01)
    raise AssertionError(f"the servers' readers did not come back within 30 s: {listing}")


async def test_events_sent_via_either_server_reach_clients_of_both_in_order_once(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = servers
    async with (
        httpx.AsyncClient() as http,
        stream(a, "room") as a1,
        stream(a, "room") as a2,
        stream(b, "room") as b1,
        stream(b, "room") as b2,
    ):
        ids = [await send(http, (a, b)[i % 2], "room", str(i)) for i in range(100)]
        await send(http, a, "room", "end")
        for client in (a1, a2, b1, b2):
            events = await client.read_events(101)
            assert [e.data for e in events] == [*map(str, range(100)), "end"]
            assert [e.id for e in events[:100]] == ids
            keys = [n_of(e) for e in events]
            assert keys == sorted(set(keys))  # in order, none twice


async def test_client_resumes_on_the_other_server_with_exactly_the_missed_events(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = servers
    async with httpx.AsyncClient() as http:
        async with stream(a, "feed") as first:
            for i in range(3):
                await send(http, a, "feed", f"seen {i}")
            seen = await first.read_events(3)
        # The client is gone; events go on, through both servers.
        missed = [await send(http, (a, b)[i % 2], "feed", f"missed {i}") for i in range(10)]
        async with stream(b, "feed", last_event_id=seen[-1].id) as resumed:
            got = await resumed.read_events(10)
            assert [e.data for e in got] == [f"missed {i}" for i in range(10)]
            assert [e.id for e in got] == missed
            await send(http, a, "feed", "live")
            assert [e.data for e in await resumed.read_events(1)] == ["live"]


async def test_10000_events_reach_every_client_while_server_readers_are_killed(
    servers: tuple[ServerProcess, ServerProcess], redis_server: RedisServer, prefix: str
) -> None:
    total = 10_000
    a, b = servers
    received: list[list[str]] = [[] for _ in range(4)]
    # maxlen: a server slowed down by a busy machine must not find its next events trimmed
    # (that would rightly be a gap, not what is tested here).
    backend = RedisBackend(
        redis_server.url, prefix=prefix, maxlen=total, client_name="sse-mp-sender"
    )
    async with (
        ChannelStore(backend=backend) as sender,
        stream(a, "flood") as a1,
        stream(a, "flood") as a2,
        stream(b, "flood") as b1,
        stream(b, "flood") as b2,
        anyio.create_task_group() as group,
    ):

        async def consume(client: RawHTTPStream, out: list[str]) -> None:
            while len(out) < total:
                events = await client.read_events(total - len(out), timeout=60)
                if not events:
                    raise AssertionError(
                        f"stream ended after {len(out)} events: {client.body[-300:]!r}"
                    )
                out.extend(e.data for e in events)

        for client, out in zip((a1, a2, b1, b2), received, strict=True):
            group.start_soon(consume, client, out)
        kills = 0
        with admin(redis_server) as redis_admin:
            for i in range(total):
                await sender.send("flood", str(i))
                if i % 1500 == 750:
                    readers = await readers_reading(redis_admin, len(servers))
                    if kills % 3 == 2:  # every normal connection: servers', the sender's
                        redis_admin.client_kill_filter(_type="normal", skipme=True)
                    else:  # the servers' readers, by id
                        for entry in readers:
                            redis_admin.client_kill_filter(_id=entry["id"])
                    kills += 1
        with anyio.move_on_after(30):
            while any(len(out) < total for out in received):
                await anyio.sleep(0.05)
        group.cancel_scope.cancel()
    counts = [len(out) for out in received]
    if any(count < total for count in counts):
        async with httpx.AsyncClient() as http:
            stats = [(await http.get(f"{server.url}/stats")).text for server in (a, b)]
        raise AssertionError(f"received {counts} of {total}; servers: {stats}")
    for out in received:
        assert out == [str(i) for i in range(total)]
    async with httpx.AsyncClient() as http:
        for server in (a, b):
            stats = json.loads((await http.get(f"{server.url}/stats")).text)
            assert stats["backend"]["connected"] is True
            assert stats["backend"]["reconnects"] >= kills  # each kill hit each server
            assert stats["backend"]["gaps"] == 0
