"""The scripted scenario every metrics test runs: real uvicorn, real sockets, known counts.

Connect three streams; send two events, each read before the next; a slow consumer (a
burst past ``max_lag``); a revocation; a gap (an unknown id) and a replay (a known one); a
write that times out (a client that never reads); a client that leaves. ``read`` is called
at the end, while two streams are still open, and its result returned.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, TypeVar

from _asgi_helpers import make_app, wait_live
from _servers import open_stream, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from _servers import RawHTTPStream, RunningServer
    from sse_channels import ChannelStore
    from sse_channels._types import ASGIApp

__all__ = ["EXPECTED", "run_scenario"]

T = TypeVar("T")

#: What the scenario must measure, by measurement (counters, the gauge, histogram counts).
EXPECTED = {
    "streams_open": 2,  # dave, erin
    "events_sent": 2 + 3 + 2,  # news, the burst on ticker, bulk
    # alice 2, bob 2, erin's replay 1, frank 2 (his second handed out, never written)
    "events_delivered": 7,
    "events_replayed": 1,
    "gaps{unknown_id}": 1,
    "slow_consumer_disconnects": 1,
    "revocations": 1,
    "write_timeouts": 1,
    "subscriptions_closed{revoked}": 1,
    "subscriptions_closed{slow_consumer}": 1,
    "subscriptions_closed{closed}": 2,  # frank (timed out), bob (left)
    "stream_duration.count": 4,  # alice, bob, carol, frank
    # Written and timed: alice's and bob's two each, frank's first; erin's first write is
    # her replay, which is not timed (its lag is the time she was away).
    "delivery_lag.count": 5,
}


async def run_scenario(
    store: ChannelStore,
    wrap: Callable[[ASGIApp], ASGIApp],
    read: Callable[[RunningServer], Awaitable[T]],
) -> T:
    """Serve ``wrap(app)`` for ``store`` (which needs ``max_lag=2``), script it, ``read``."""
    app = wrap(make_app(store, heartbeat=None, send_timeout=0.5))
    streams: list[RawHTTPStream] = []
    frank = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    async def connect(channel: str, user: str, **headers: str) -> RawHTTPStream:
        stream = await open_stream(
            server.host, server.port, f"/?channel={channel}", headers={"x-user": user, **headers}
        )
        streams.append(stream)
        await stream.wait_comments(1)
        return stream

    with serve_in_thread(app, sndbuf=4096) as server:
        try:
            # Connect: three streams.
            alice = await connect("news", "alice")
            bob = await connect("news", "bob")
            carol = await connect("ticker", "carol")
            await wait_live(server, store, 3, 2)

            # Send: two events, each read by alice and bob before the next.
            sent = []
            for n in range(2):
                sent.append(await server.arun(store.send, "news", f"n{n}"))
                for reader in (alice, bob):
                    assert [e.data for e in await reader.read_events(1)] == [f"n{n}"]

            # A slow consumer: three events in one burst, more than max_lag=2 behind.
            async def burst() -> None:
                for n in range(3):
                    await store.send("ticker", n)

            await server.arun(burst)
            await carol.read_to_end(timeout=2)
            assert carol.ended
            assert carol.events == []

            # A revocation.
            assert await server.acall(lambda: store.revoke(key="alice")) == 1
            await alice.read_to_end(timeout=2)
            assert alice.ended

            # A gap (an id this store never gave), and a replay (from the first event).
            dave = await connect("news", "dave", **{"last-event-id": "nope-1"})
            assert [e.event for e in await dave.read_events(1)] == ["gap"]
            erin = await connect("news", "erin", **{"last-event-id": str(sent[0].id)})
            assert [e.data for e in await erin.read_events(1)] == ["n1"]

            # A write that times out: a client that never reads. Its first event fills
            # every buffer on the way (that write completes: uvicorn buffers it); the
            # write of the next one waits for room, and times out.
            frank.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            frank.connect((server.host, server.port))
            frank.sendall(b"GET /?channel=bulk HTTP/1.1\r\nhost: x\r\nx-user: frank\r\n\r\n")
            await wait_live(server, store, 4, 2)  # bob, dave, erin, frank
            await server.arun(store.send, "bulk", "x" * (8 << 20))
            # Frank's writer took the first already: the event loop ran it before this.
            await server.arun(store.send, "bulk", "y")
            await wait_live(server, store, 3, 3)

            # Bob leaves.
            await bob.aclose()
            await wait_live(server, store, 2, 2)
            result = await read(server)
        finally:
            frank.close()
            for stream in streams:
                await stream.aclose()
    stats = store.statistics()  # the store's own counters agree
    assert stats.events_delivered == EXPECTED["events_delivered"]
    assert (stats.replayed, stats.gaps, stats.revoked) == (1, 1, 1)
    assert stats.slow_consumer_disconnects == 1
    return result
