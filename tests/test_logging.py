"""The loggers and their levels, on real scenarios: uvicorn, raw sockets, the store.

``sse_channels.asgi``: a stream opened or closed at DEBUG, a write given up on at INFO
with the client's address, a credential's expiry at INFO. ``sse_channels.store``: a slow
consumer and a revocation at INFO. (The Redis backend's are in test_metrics_redis.py.)
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone

import pytest
from anyio.abc import SocketAttribute

from _asgi_helpers import make_app, wait_live
from _servers import open_stream, serve_in_thread
from sse_channels import ChannelStore
from sse_channels.asgi import EventStreamResponse
from sse_channels.testing import connect_sse

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == name]


async def test_connect_disconnect_revoke_and_slow_consumer_are_logged_at_their_levels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sse_channels")
    store = ChannelStore(max_lag=2)
    with serve_in_thread(make_app(store, heartbeat=None)) as server:
        alice = await open_stream(
            server.host, server.port, "/?channel=news", headers={"x-user": "alice"}
        )
        carol = await open_stream(
            server.host, server.port, "/?channel=ticker", headers={"x-user": "carol"}
        )
        try:
            await alice.wait_comments(1)
            await carol.wait_comments(1)
            local = alice.stream.extra(SocketAttribute.local_address)
            assert isinstance(local, tuple)
            client = f"{local[0]}:{local[1]}"

            async def burst() -> None:
                for n in range(3):
                    await store.send("ticker", n)

            await server.arun(burst)
            await carol.read_to_end(timeout=2)
            assert await server.acall(lambda: store.revoke(key="alice")) == 1
            await alice.read_to_end(timeout=2)
            await wait_live(server, store, 0, 2)
        finally:
            await alice.aclose()
            await carol.aclose()
    asgi = lines(caplog, "sse_channels.asgi")
    opened = [m for level, m in asgi if m.startswith("stream opened")]
    assert len(opened) == 2
    assert all(level == logging.DEBUG for level, m in asgi if m.startswith("stream "))
    assert f"stream opened: client {client}, channels ['news'], last event id None" in opened
    closed = [m for _, m in asgi if m.startswith("stream closed")]
    assert f"stream closed: client {client}, reason revoked, last event id None" in closed
    assert any("reason slow_consumer" in m for m in closed)
    store_lines = lines(caplog, "sse_channels.store")
    assert (logging.INFO, "revoked 1 subscription(s) (key='alice', channel=None)") in store_lines
    slow = [(level, m) for level, m in store_lines if m.startswith("slow consumer")]
    assert slow == [
        (
            logging.INFO,
            "slow consumer disconnected: a subscriber of ['ticker'] (key='carol') fell further "
            "behind than max_lag=2; it may resume from None",
        )
    ]


async def test_a_write_that_timed_out_is_logged_at_info_with_the_client_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sse_channels")
    store = ChannelStore()
    app = make_app(store, heartbeat=None, send_timeout=0.3)
    with serve_in_thread(app, sndbuf=4096) as server:
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            client.connect((server.host, server.port))
            host, port = client.getsockname()
            address = f"{host}:{port}"
            client.sendall(b"GET /?channel=bulk HTTP/1.1\r\nhost: x\r\nx-user: frank\r\n\r\n")
            await wait_live(server, store, 1, 2)
            await server.arun(store.send, "bulk", "x" * (8 << 20))
            await server.arun(store.send, "bulk", "y")
            await wait_live(server, store, 0, 3)
        finally:
            client.close()
    assert lines(caplog, "sse_channels.asgi") == [
        (
            logging.INFO,
            f"gave up on client {address}: a write took longer than send_timeout (0.3 s); "
            "channels ['bulk']",
        )
    ]  # and nothing at INFO for opening or closing it


async def test_a_stream_ended_by_its_credential_expiry_is_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sse_channels.asgi")
    async with ChannelStore() as store:
        expires = datetime.now(timezone.utc) + timedelta(seconds=0.1)
        response = EventStreamResponse(store.subscribe("news"), heartbeat=None, expires=expires)
        async with connect_sse(response) as stream:
            await stream.wait_finished(timeout=2)
        lifetime = EventStreamResponse(store.subscribe("news"), heartbeat=None, max_lifetime=0.1)
        async with connect_sse(lifetime) as stream:
            await stream.wait_finished(timeout=2)
    asgi = lines(caplog, "sse_channels.asgi")
    infos = [m for level, m in asgi if level == logging.INFO]
    assert infos == [
        "stream ended: the credential behind it expired (client 127.0.0.1:50000, channels ['news'])"
    ]
    # The lifetime's end is routine: DEBUG.
    assert [level for level, m in asgi if m.startswith("stream closed")] == [logging.DEBUG]
