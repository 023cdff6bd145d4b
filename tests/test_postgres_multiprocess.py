"""Two uvicorn server processes share one PostgreSQL database; clients read real SSE streams.

Each server is ``_postgres.make_app``: a store on ``PostgresBackend`` in its lifespan, an
``SSEApp`` at ``/events`` and a ``/send`` endpoint. The test process is a third party: it
sends through either server, through its own store or in its own transactions, reads the
streams as a browser would, and kills the servers' connections behind their back
(``pg_terminate_backend``) or restarts PostgreSQL itself.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio
import httpx
import pytest

from _postgres import (
    APP_DSN_ENV,
    APP_NAME,
    APP_SCHEMA_ENV,
    PrivateServer,
    connect,
    postgres_dsn,
    postgres_server,
    private_postgres,
    schema,
    unique_schema,
)
from _servers import RawHTTPStream, ServerProcess, open_stream, serve_in_subprocess
from sse_channels import GAP_EVENT, ChannelStore
from sse_channels.backends.postgres import PostgresBackend, send_in

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = ["postgres_dsn", "postgres_server", "private_postgres", "schema"]  # fixtures

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # psycopg's async connections


def start_servers(stack: ExitStack, dsn: str, schema: str) -> tuple[ServerProcess, ...]:
    env = {APP_DSN_ENV: dsn, APP_SCHEMA_ENV: schema}
    return tuple(
        stack.enter_context(serve_in_subprocess("_postgres:make_app", args=("--factory",), env=env))
        for _ in range(2)
    )


@pytest.fixture
def servers(postgres_dsn: str, schema: str) -> Iterator[tuple[ServerProcess, ...]]:
    """Two uvicorn processes on two ports, both on the test's database and schema."""
    with ExitStack() as stack:
        yield start_servers(stack, postgres_dsn, schema)


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


def position(event_id: str | None) -> tuple[int, int]:
    assert event_id is not None
    txid, _, row_id = event_id.partition("-")[2].partition(".")
    return int(txid), int(row_id)


async def test_events_sent_via_either_server_reach_clients_of_both_in_order_once(
    servers: tuple[ServerProcess, ServerProcess], postgres_dsn: str, schema: str
) -> None:
    a, b = servers
    async with (
        httpx.AsyncClient() as http,
        stream(a, "room") as a1,
        stream(a, "room") as a2,
        stream(b, "room") as b1,
        stream(b, "room") as b2,
    ):
        ids = []
        for i in range(100):
            if i % 10 == 5:  # some in a transaction of the test's own
                with connect(postgres_dsn, autocommit=False) as conn, conn.transaction():
                    ids.append(send_in(conn, "room", str(i), schema=schema).id)
            else:
                ids.append(await send(http, (a, b)[i % 2], "room", str(i)))
        await send(http, a, "room", "end")
        for client in (a1, a2, b1, b2):
            events = await client.read_events(101)
            assert [e.data for e in events] == [*map(str, range(100)), "end"]
            assert [e.id for e in events[:100]] == ids
            keys = [position(e.id) for e in events]
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


def terminate(dsn: str, name_like: str) -> int:
    """``pg_terminate_backend`` every connection whose application_name is like it."""
    with connect(dsn) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
            (name_like,),
        ).fetchall()
    return len(rows)


async def test_10000_events_reach_every_client_while_connections_are_terminated(
    servers: tuple[ServerProcess, ServerProcess], postgres_dsn: str, schema: str
) -> None:
    total = 10_000
    a, b = servers
    received: list[list[str]] = [[] for _ in range(4)]
    backend = PostgresBackend(
        postgres_dsn, schema=schema, maxlen=total, application_name="sse-mp-sender"
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
        for i in range(total):
            await sender.send("flood", str(i))
            if i % 1500 == 750:
                if kills % 3 == 2:  # every connection of ours: servers' and the sender's
                    killed = terminate(postgres_dsn, "sse-mp-%")
                else:  # the servers' readers
                    killed = terminate(postgres_dsn, f"{APP_NAME}:%:listen")
                assert killed >= 2
                kills += 1
        with anyio.move_on_after(60):
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


async def test_postgres_restarted_mid_stream_loses_nothing(
    private_postgres: PrivateServer,
) -> None:
    dsn = private_postgres.dsn
    schema_name = unique_schema()
    total = 600
    with ExitStack() as stack:
        a, b = start_servers(stack, dsn, schema_name)
        backend = PostgresBackend(dsn, schema=schema_name, application_name="sse-mp-sender")
        async with (
            ChannelStore(backend=backend) as sender,
            stream(a, "feed") as on_a,
            stream(b, "feed") as on_b,
        ):
            sent = []
            for i in range(total):
                if i == total // 3:
                    # Stop and start the server: every connection drops, nothing is lost.
                    await anyio.to_thread.run_sync(private_postgres.stop)
                    await anyio.to_thread.run_sync(private_postgres.start)
                sent.append(await sender.send("feed", str(i)))  # retries across the restart
            for client in (on_a, on_b):
                events = await client.read_events(total, timeout=60)
                assert [e.event for e in events if e.event == GAP_EVENT] == []
                assert [e.data for e in events] == [str(i) for i in range(total)]
                assert [e.id for e in events] == [e.id for e in sent]
            # A client resuming from before the restart, on the other server: the rest.
            async with stream(b, "feed", last_event_id=sent[10].id) as resumed:
                events = await resumed.read_events(total - 11, timeout=30)
                assert [e.data for e in events] == [str(i) for i in range(11, total)]
