"""What every framework helper must do under a real server, written once.

Each ``tests/test_<framework>.py`` builds its framework's app around one ``ChannelStore``
and runs these scenarios against it, served by ``_servers.serve_in_thread``. The app
contract they rely on:

- ``GET /events`` streams the channel ``?channel=`` (default ``news``) with the helper's
  ``sse_response`` and default options, resuming from ``last_event_id(request)``;
- the ``x-user`` request header is the subscription's key;
- a channel starting with ``private:`` is refused with 403, before subscribing, unless
  ``x-user`` is ``admin``;
- ``?options=NAME`` streams with ``OPTIONS[NAME]`` (passed as ``options=``) instead of the
  defaults, so that heartbeats, the write deadline and ``max_lifetime`` can be seen in a
  test's time;
- ``?expires_in=SECONDS`` passes ``expires=expiry(request's value)`` (the credential
  behind the stream expires that many seconds from now).

The store lives in the server's event loop: events are sent and statistics read there
(``server.arun``/``server.acall``); the client runs in the test's own loop.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
from httpx_sse import aconnect_sse

from _servers import RunningServer, open_stream
from sse_channels import format_sse
from sse_channels.asgi import EXPIRY_RETRY, StreamOptions, opening_comment

if TYPE_CHECKING:
    from collections.abc import Callable

    from sse_channels import ChannelStore, Event

__all__ = [
    "OPTIONS",
    "client_leaving_mid_write_is_released",
    "docs_example",
    "docs_example_works",
    "expiry",
    "half_open_client_is_released_by_the_write_deadline",
    "heartbeats_keep_a_quiet_stream_open",
    "refusal_sends_403_and_no_stream_byte",
    "resume_delivers_missed_events_once",
    "revoked_stream_ends",
    "stream_ends_after_max_lifetime",
    "stream_ends_at_credential_expiry",
    "stream_then_release",
    "subscribers",
    "wait_released",
]

DOCS = Path(__file__).resolve().parent.parent / "docs"

#: The stream options an app picks with ``?options=``: seconds, not the production minutes.
OPTIONS = {
    "tight": StreamOptions(heartbeat=0.2, send_timeout=0.5),
    "brief": StreamOptions(heartbeat=None, max_lifetime=0.4, lifetime_jitter=0),
}

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    "x-accel-buffering": "no",
}


async def subscribers(server: RunningServer, store: ChannelStore) -> int:
    """The store's live subscriptions, counted in the server's event loop."""
    return await server.acall(lambda: store.statistics().subscribers)


async def wait_released(server: RunningServer, store: ChannelStore, within: float = 1.0) -> float:
    """Wait until the store has no live subscription; return how long that took.

    Raises:
        AssertionError: some were still live after ``within`` seconds.
    """
    began = time.monotonic()
    while (live := await subscribers(server, store)) and time.monotonic() - began < within:
        await anyio.sleep(0.005)
    elapsed = time.monotonic() - began
    assert live == 0, f"{live} subscription(s) still live {elapsed:.2f} s after the client left"
    return elapsed


async def send(server: RunningServer, store: ChannelStore, channel: str, *data: str) -> list[Event]:
    """Send ``data`` to ``channel`` in one burst (one batch for a waiting subscriber)."""

    async def burst() -> list[Event]:
        return [await store.send(channel, item) for item in data]

    return await server.arun(burst)


async def wait_subscribed(server: RunningServer, store: ChannelStore, count: int = 1) -> None:
    with anyio.fail_after(5):
        while await subscribers(server, store) < count:
            await anyio.sleep(0.005)


async def stream_then_release(
    server: RunningServer, store: ChannelStore, path: str = "/events"
) -> float:
    """Headers and the opening comment at once, events in order, release on disconnect.

    Returns the seconds from the client closing its socket to the store having no live
    subscription.
    """
    stream = await open_stream(server.host, server.port, path)
    try:
        assert stream.status == 200
        for name, value in SSE_HEADERS.items():
            assert stream.headers.get(name) == value, (name, stream.headers)
        assert "connection" not in stream.headers
        assert "content-encoding" not in stream.headers or (
            stream.headers["content-encoding"] == "identity"
        )
        # The opening comment comes before any event is sent.
        await stream.wait_comments(1, timeout=2)
        assert stream.body == opening_comment()
        await wait_subscribed(server, store)
        sent = await send(server, store, "news", "one", "two", "three")
        sent += await send(server, store, "news", "four")
        received = await stream.read_events(4, timeout=2)
        assert [(e.data, e.id) for e in received] == [(e.data, e.id) for e in sent]
    finally:
        await stream.aclose()
    return await wait_released(server, store)


async def resume_delivers_missed_events_once(
    server: RunningServer, store: ChannelStore, path: str = "/events"
) -> None:
    """Drop, miss three events, reconnect with ``Last-Event-ID``: each arrives exactly once.

    The client is httpx with httpx-sse, as an application would use it; the reconnection
    first uses the header (what ``EventSource`` sends) and then, on a second round, the
    ``last_event_id`` query parameter (what a first connection can carry).
    """
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        async with aconnect_sse(client, "GET", path) as source:
            events = source.aiter_sse()
            await wait_subscribed(server, store)
            first = await send(server, store, "news", "a", "b")
            got = [await anext(events) for _ in first]
            assert [(e.data, e.id) for e in got] == [(e.data, e.id) for e in first]
        await wait_released(server, store)
        missed = await send(server, store, "news", "c", "d", "e")

        last = first[-1].id
        assert last is not None
        async with aconnect_sse(client, "GET", path, headers={"last-event-id": last}) as source:
            events = source.aiter_sse()
            got = [await anext(events) for _ in missed]
            await wait_subscribed(server, store)
            live = await send(server, store, "news", "f")
            got.append(await anext(events))
        assert [(e.event, e.data, e.id) for e in got] == [
            ("message", e.data, e.id) for e in [*missed, *live]
        ]
        await wait_released(server, store)

    # Query-parameter form: resume after "d", so "e" and "f" again, nothing else.
    resume_from = missed[1].id
    stream = await open_stream(server.host, server.port, f"{path}?last_event_id={resume_from}")
    try:
        got_events = await stream.read_events(2, timeout=2)
        assert [e.data for e in got_events] == ["e", "f"]
        await wait_subscribed(server, store)
        await send(server, store, "news", "g")
        assert [e.data for e in await stream.read_events(1, timeout=2)] == ["g"]
        assert [e.data for e in stream.events] == ["e", "f", "g"]
    finally:
        await stream.aclose()
    await wait_released(server, store)


async def refusal_sends_403_and_no_stream_byte(
    server: RunningServer, store: ChannelStore, path: str = "/events"
) -> None:
    """A channel the user may not read: 403, a plain body, no subscription, no SSE byte."""
    stream = await open_stream(server.host, server.port, f"{path}?channel=private:payroll")
    try:
        body = await stream.read_to_end(timeout=2)
    finally:
        await stream.aclose()
    assert stream.status == 403
    assert not stream.headers.get("content-type", "").startswith("text/event-stream")
    assert b": ok" not in body
    assert b"data:" not in body
    assert stream.comments == []
    assert stream.events == []
    assert await subscribers(server, store) == 0

    # The same channel for a user who may read it streams normally.
    stream = await open_stream(
        server.host, server.port, f"{path}?channel=private:payroll", headers={"x-user": "admin"}
    )
    try:
        assert stream.status == 200
        await stream.wait_comments(1, timeout=2)
        assert stream.body == opening_comment()
    finally:
        await stream.aclose()
    await wait_released(server, store)


async def revoked_stream_ends(
    server: RunningServer, store: ChannelStore, path: str = "/events"
) -> float:
    """``store.revoke(key=user)`` ends that user's open stream cleanly; returns seconds taken."""
    stream = await open_stream(server.host, server.port, path, headers={"x-user": "alice"})
    try:
        await stream.wait_comments(1, timeout=2)
        await wait_subscribed(server, store)
        began = time.monotonic()
        assert await server.acall(lambda: store.revoke(key="alice")) == 1
        await stream.read_to_end(timeout=1)
        elapsed = time.monotonic() - began
        assert stream.ended, "the response did not end with its final chunk"
    finally:
        await stream.aclose()
    assert await subscribers(server, store) == 0
    return elapsed


async def client_leaving_mid_write_is_released(
    server: RunningServer, store: ChannelStore, path: str = "/events"
) -> float:
    """A client stops reading until the server's writes back up, then closes its socket.

    The server should be started with a small ``sndbuf``. Returns the seconds from the
    close to the store having no live subscription.
    """
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    try:
        client.settimeout(5)
        client.connect((server.host, server.port))
        client.sendall(f"GET {path} HTTP/1.1\r\nhost: {server.host}\r\n\r\n".encode())
        head = b""
        while b": ok" not in head:
            head += client.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        await wait_subscribed(server, store)
        # Far more than the socket buffers and the server's write buffer hold: the first
        # batch fills them, the server's write of the second one waits.
        big = "x" * 8192
        await send(server, store, "news", *[big] * 40)
        await anyio.sleep(0.1)
        await send(server, store, "news", *[big] * 40)
        await anyio.sleep(0.1)
        assert await subscribers(server, store) == 1
    finally:
        client.close()
    return await wait_released(server, store)


async def heartbeats_keep_a_quiet_stream_open(
    server: RunningServer, store: ChannelStore, path: str = "/events?options=tight"
) -> float:
    """With nothing sent, a comment arrives every ``heartbeat``; returns seconds for three."""
    stream = await open_stream(server.host, server.port, path)
    try:
        await stream.wait_comments(1, timeout=2)
        began = time.monotonic()
        comments = await stream.wait_comments(4, timeout=3)
        elapsed = time.monotonic() - began
        assert comments[1:4] == [" ping"] * 3, comments
        assert stream.events == []
        assert elapsed >= 3 * 0.2 - 0.05, "heartbeats came faster than their interval"
    finally:
        await stream.aclose()
    await wait_released(server, store)
    return elapsed


async def half_open_client_is_released_by_the_write_deadline(
    server: RunningServer, store: ChannelStore, path: str = "/events?options=tight"
) -> float:
    """A client that stops reading but keeps its socket open is given up on.

    The server should be started with a small ``sndbuf``. The framework owns ``send``: the
    engine's deadline must still end the write. Returns the seconds from the write backing
    up (the last event sent) to the store having no live subscription.
    """
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    try:
        client.settimeout(5)
        client.connect((server.host, server.port))
        client.sendall(f"GET {path} HTTP/1.1\r\nhost: {server.host}\r\n\r\n".encode())
        head = b""
        while b": ok" not in head:
            head += client.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        await wait_subscribed(server, store)
        # One batch far bigger than every buffer on the way: the write backs up for good.
        # Few events, so the store never sees a slow consumer: only the deadline can act.
        await send(server, store, "news", *["x" * (1 << 20)] * 4)
        released = await wait_released(server, store, within=0.5 + 2.5)
        stats = await server.acall(store.statistics)
        assert stats.slow_consumer_disconnects == 0, (
            "released as a slow consumer, not by the deadline"
        )
        assert client.fileno() != -1  # the client never closed its socket
        return released
    finally:
        client.close()


async def stream_ends_after_max_lifetime(
    server: RunningServer, store: ChannelStore, path: str = "/events?options=brief"
) -> float:
    """The stream ends cleanly after ``max_lifetime``; returns the seconds it lasted."""
    # The lifetime starts between these two clocks: the lower bound is measured from the
    # first (the stream cannot end earlier), the upper one from the second (however long
    # connecting took under load).
    before = time.monotonic()
    stream = await open_stream(server.host, server.port, path)
    try:
        began = time.monotonic()
        await stream.read_to_end(timeout=3)
        ended = time.monotonic()
        lasted = ended - began
        assert stream.ended, "the response did not end with its final chunk"
        assert stream.comments == [" ok"]
        assert ended - before >= 0.4 - 0.05
        assert lasted < 2.5
    finally:
        await stream.aclose()
    assert await subscribers(server, store) == 0
    return lasted


def expiry(expires_in: str | None) -> datetime | None:
    """The ``expires=`` of a request's ``?expires_in=`` (seconds from now), or ``None``."""
    if expires_in is None:
        return None
    return datetime.now(timezone.utc) + timedelta(seconds=float(expires_in))


async def stream_ends_at_credential_expiry(
    server: RunningServer, store: ChannelStore, path: str = "/events?expires_in=0.4"
) -> float:
    """The stream ends cleanly at ``expires`` with the ``retry:`` hint; returns its length."""
    # ``expires`` is set while the request is handled, between these two clocks (see
    # stream_ends_after_max_lifetime for why there are two).
    before = time.monotonic()
    stream = await open_stream(server.host, server.port, path)
    try:
        began = time.monotonic()
        await stream.read_to_end(timeout=3)
        ended = time.monotonic()
        lasted = ended - began
        assert stream.ended, "the response did not end with its final chunk"
        assert stream.body.endswith(format_sse(comment="expired", retry=EXPIRY_RETRY))
        assert ended - before >= 0.4 - 0.05
        assert lasted < 0.4 + 0.3
    finally:
        await stream.aclose()
    assert await subscribers(server, store) == 0
    return lasted


def docs_example(page: str) -> str:
    """The ``# app.py`` code block of a docs page."""
    text = (DOCS / page).read_text(encoding="utf-8")
    match = re.search(r"```python\n(# app\.py\n.*?)```", text, re.DOTALL)
    assert match, f"no '# app.py' example in docs/{page}"
    return match.group(1)


async def docs_example_works(
    host: str, port: int, send_signal: Callable[[int], None], *, clean_end: bool = True
) -> None:
    """A docs example, served: listen, publish through it, get refused, SIGINT ends it.

    Every framework page has the same routes: ``/events?room=`` (``staff`` is refused
    with 403) and ``POST /publish?room=``, which answers the new event's id. With
    ``clean_end`` the stream must end with its final chunk (uvicorn: ``close_on_signal``
    closed the store); otherwise it need only be closed (hypercorn's worker processes
    never see the signal: the server cancels open responses after its graceful timeout).
    """
    stream = await open_stream(host, port, "/events?room=a")
    try:
        assert stream.status == 200
        await stream.wait_comments(1, timeout=5)
        assert stream.body == opening_comment(retry=2000)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            published = await client.post("/publish?room=a", content=b"hello")
            assert published.status_code == 200, published.text
            (event,) = await stream.read_events(1, timeout=5)
            assert (event.data, event.id) == ("hello", published.text.strip())
            refused = await client.get("/events?room=staff")
            assert refused.status_code == 403
            assert not refused.headers["content-type"].startswith("text/event-stream")
        send_signal(signal.SIGINT)
        await stream.read_to_end(timeout=5)
        if clean_end:
            assert stream.ended, "the stream did not end cleanly on SIGINT"
        else:
            # Cancelled by the server after its graceful timeout: no final chunk, the
            # connection dropped.
            assert stream.closed, "the server did not drop the stream after its timeout"
            assert not stream.ended, "the stream ended cleanly: pass clean_end=True"

    finally:
        await stream.aclose()
