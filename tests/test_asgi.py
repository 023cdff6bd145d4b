"""sse_channels.asgi: the body iterator, the streaming response and the mountable app.

Unit tests drive the app in process (``sse_channels.testing.connect_sse``); the tests named
``test_real_server_*`` run it under a real server on a loopback port: uvicorn on asyncio,
hypercorn on trio.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

from _servers import (
    ServerName,
    open_stream,
    read_sse_then_leave,
    serve_in_subprocess,
    serve_in_thread,
    server_for,
)
from sse_channels import ChannelStore, Subscription, parse_sse
from sse_channels.asgi import (
    HEARTBEAT,
    SSE_HEADERS,
    EventStreamResponse,
    SSEApp,
    close_on_signal,
    event_stream,
    last_event_id,
    opening_comment,
)
from sse_channels.testing import connect_sse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.anyio

OPENING = b": ok\n\n"


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> float:
    """Poll ``predicate`` until true; return the seconds it took (TimeoutError after timeout)."""
    began = time.monotonic()
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)
    return time.monotonic() - began


def stream_app(
    subscription: Subscription, **options: Any
) -> Callable[[Any, Any, Any], Awaitable[None]]:
    return EventStreamResponse(subscription, **options)


def live(store: ChannelStore) -> int:
    return store.statistics().subscribers


# -- headers and the opening comment ----------------------------------------------------------


def test_sse_headers_are_the_stream_headers_and_nothing_else() -> None:
    assert dict(SSE_HEADERS) == {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
    }
    with pytest.raises(TypeError):
        SSE_HEADERS["connection"] = "keep-alive"  # type: ignore[index]


async def test_response_sends_headers_and_opening_comment_before_any_event() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription)) as stream:
            await until(lambda: len(stream.chunks) == 1)
            assert stream.status == 200
            assert stream.headers == dict(SSE_HEADERS)
            assert "connection" not in stream.headers
            assert "content-encoding" not in stream.headers
            assert stream.chunks == [OPENING]
            assert stream.events == []


async def test_response_extra_headers_add_to_or_replace_the_stream_headers() -> None:
    async with ChannelStore() as store:
        app = stream_app(
            store.subscribe("news"),
            headers={"Cache-Control": "no-cache", "X-Custom": "1"},
            status=201,
        )
        async with connect_sse(app) as stream:
            assert stream.status == 201
            assert stream.headers["cache-control"] == "no-cache"
            assert stream.headers["x-custom"] == "1"
            assert [name for name, _ in stream.raw_headers].count(b"cache-control") == 1


@pytest.mark.parametrize(
    "header",
    ["Connection", "content-length", "Transfer-Encoding", "content-encoding", "keep-alive"],
)
async def test_response_refuses_headers_that_break_streaming(header: str) -> None:
    async with ChannelStore() as store, store.subscribe("news") as subscription:
        with pytest.raises(ValueError, match="must not set"):
            EventStreamResponse(subscription, headers={header: "x"})


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"heartbeat": 0}, ValueError),
        ({"heartbeat": -1.0}, ValueError),
        ({"heartbeat": float("inf")}, ValueError),
        ({"heartbeat": True}, TypeError),
        ({"heartbeat": "15"}, TypeError),
        ({"send_timeout": 0}, ValueError),
        ({"max_lifetime": -5}, ValueError),
        ({"lifetime_jitter": 1.0}, ValueError),
        ({"lifetime_jitter": -0.1}, ValueError),
        ({"retry": -1}, ValueError),
        ({"retry": True}, TypeError),
        ({"status": 1000}, ValueError),
        ({"headers": {"x-bad": "a\r\nb"}}, ValueError),
        ({"headers": {"x-bad": 1}}, TypeError),
    ],
)
async def test_response_rejects_bad_options_at_the_call(
    options: dict[str, Any], error: type[Exception]
) -> None:
    async with ChannelStore() as store, store.subscribe("news") as subscription:
        with pytest.raises(error):
            EventStreamResponse(subscription, **options)


async def test_retry_is_written_in_the_opening_block() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(stream_app(store.subscribe("news"), retry=2500)) as stream,
    ):
        await until(lambda: len(stream.chunks) == 1)
        assert stream.chunks == [b": ok\nretry: 2500\n\n"]
        assert opening_comment(2500) == stream.chunks[0]


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
    async with (
        ChannelStore() as store,
        connect_sse(stream_app(store.subscribe("news"), heartbeat=0.1)) as stream,
    ):
        began = time.monotonic()
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


def test_lifetime_jitter_spreads_lifetimes_over_the_whole_range() -> None:
    random.seed(4)
    lifetimes = []
    for _ in range(200):
        response = EventStreamResponse(
            _FakeSubscription(),  # type: ignore[arg-type]
            max_lifetime=100.0,
            lifetime_jitter=0.2,
        )
        assert response.lifetime is not None
        lifetimes.append(response.lifetime)
    assert 80.0 <= min(lifetimes) < 85.0
    assert 115.0 < max(lifetimes) <= 120.0


class _FakeSubscription:
    def close(self) -> None:
        pass


async def test_client_gone_before_first_event_releases_the_subscription() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription)) as stream:
            await stream.disconnect()
        assert subscription.close_reason == "closed"
        assert live(store) == 0
        assert stream.events == []


async def test_client_gone_in_the_middle_of_a_write_releases_the_subscription() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription, send_timeout=None)) as stream:
            stream.stop_reading()
            await store.send("news", "stuck")
            await anyio.sleep(0.05)
            await stream.disconnect()
        assert subscription.closed
        assert live(store) == 0


async def test_write_deadline_releases_a_client_that_stopped_reading() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        app = stream_app(subscription, send_timeout=0.2, heartbeat=None)
        async with connect_sse(app) as stream:
            await until(lambda: len(stream.chunks) == 1)
            stream.stop_reading()
            await store.send("news", "never read")
            released = await until(lambda: subscription.closed, timeout=3)
            assert 0.15 <= released < 1.5
            await stream.wait_finished(timeout=1)
            assert not stream.finished  # abandoned, not ended: the server drops the connection
        assert live(store) == 0


async def test_write_deadline_applies_to_heartbeats_too() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        app = stream_app(subscription, send_timeout=0.2, heartbeat=0.05)
        async with connect_sse(app) as stream:
            await until(lambda: len(stream.chunks) == 1)
            stream.stop_reading()
            await until(lambda: subscription.closed, timeout=3)
            await stream.wait_finished(timeout=1)


async def test_send_raising_oserror_ends_the_response_quietly() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: Any) -> None:
            sent.append(message)
            if len(sent) == 3:
                raise OSError("connection reset")

        await store.send("news", "x")
        await stream_app(subscription)({"type": "http"}, receive, send)
        assert len(sent) == 3
        assert subscription.closed


async def test_an_exception_in_send_propagates_unwrapped_and_releases() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")

        async def receive() -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError

        async def send(message: Any) -> None:
            raise KeyError("broken server")

        with pytest.raises(KeyError, match="broken server"):
            await stream_app(subscription)({"type": "http"}, receive, send)
        assert subscription.closed


async def test_cancelling_the_response_releases_the_subscription() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        with anyio.move_on_after(0.1):
            async with connect_sse(stream_app(subscription)) as stream:
                await anyio.sleep_forever()
        await stream.wait_finished(timeout=1)
        assert subscription.closed


async def test_revocation_ends_the_stream_cleanly() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news", key="alice")
        other = store.subscribe("news", key="bob")
        async with connect_sse(stream_app(subscription)) as a, connect_sse(stream_app(other)) as b:
            await store.send("news", "before")
            await a.read_events(1)
            assert store.revoke(key="alice") == 1
            await a.wait_finished(timeout=1)
            assert a.finished
            assert subscription.close_reason == "revoked"
            assert not b.app_done
            await store.send("news", "after")
            assert [e.data for e in await b.read_events(2)] == ["before", "after"]


async def test_closing_the_store_ends_every_stream_cleanly() -> None:
    store = ChannelStore()
    subscriptions = [store.subscribe("news") for _ in range(3)]
    async with (
        connect_sse(stream_app(subscriptions[0])) as a,
        connect_sse(stream_app(subscriptions[1])) as b,
        connect_sse(stream_app(subscriptions[2])) as c,
    ):
        await store.aclose()
        for stream in (a, b, c):
            await stream.wait_finished(timeout=1)
            assert stream.finished
    assert {s.close_reason for s in subscriptions} == {"store_closed"}


async def test_a_slow_consumer_ends_the_stream_so_the_client_resumes() -> None:
    async with ChannelStore(history=3) as store:
        subscription = store.subscribe("news")
        async with connect_sse(stream_app(subscription, send_timeout=None)) as stream:
            await until(lambda: len(stream.chunks) == 1)
            stream.stop_reading()
            await store.send("news", "0")
            await anyio.sleep(0.05)
            for n in range(1, 10):
                await store.send("news", str(n))
            stream.resume_reading()
            await stream.wait_finished()
            assert stream.finished
            assert subscription.close_reason == "slow_consumer"
            assert [e.data for e in stream.events] == ["0"]


# -- the body iterator --------------------------------------------------------------------------


async def test_event_stream_yields_opening_then_one_chunk_per_batch() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription, retry=100)
        assert await body.__anext__() == b": ok\nretry: 100\n\n"
        sent = [await store.send("news", str(n)) for n in range(3)]
        assert await body.__anext__() == b"".join(e.encoded for e in sent)
        store.revoke(channel="news")
        assert [chunk async for chunk in body] == []
        assert subscription.close_reason == "revoked"


async def test_event_stream_heartbeats_when_the_consumer_waited_long_enough() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription, heartbeat=0.05)
        try:
            assert await body.__anext__() == OPENING
            assert await body.__anext__() == HEARTBEAT
            await store.send("news", "x")
            assert parse_sse(await body.__anext__())[0].data == "x"
        finally:
            await body.aclose()
        assert subscription.closed


async def test_event_stream_ends_after_max_lifetime() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        began = time.monotonic()
        chunks = [
            chunk
            async for chunk in event_stream(
                subscription, heartbeat=0.05, max_lifetime=0.2, lifetime_jitter=0
            )
        ]
        assert 0.18 <= time.monotonic() - began < 1.0
        assert chunks[0] == OPENING
        assert set(chunks[1:]) == {HEARTBEAT}
        assert subscription.closed


async def test_event_stream_closes_the_subscription_when_the_consumer_is_cancelled() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription)

        async def consume() -> None:
            async for _ in body:
                pass

        with anyio.move_on_after(0.05):
            await consume()
        await body.aclose()
        assert subscription.closed


async def test_event_stream_ends_a_slow_consumer_quietly() -> None:
    async with ChannelStore(history=2) as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription)
        await body.__anext__()
        for n in range(5):
            await store.send("news", str(n))
        assert [chunk async for chunk in body] == []
        assert subscription.close_reason == "slow_consumer"


async def test_event_stream_closed_before_its_first_chunk_releases_the_subscription() -> None:
    # A framework may drop the response before reading it (client gone at once): an async
    # generator that never started cannot run its finally, so the body must close it.
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        body = event_stream(subscription)
        await body.aclose()
        assert subscription.closed
        assert store.statistics().subscribers == 0
        assert [chunk async for chunk in body] == []


def test_event_stream_rejects_bad_options_at_the_call() -> None:
    with pytest.raises(ValueError):
        event_stream(_FakeSubscription(), heartbeat=0)  # type: ignore[arg-type]


# -- SSEApp -------------------------------------------------------------------------------------


def query_channel(scope: Any) -> list[str]:
    query = parse_qs(scope["query_string"].decode("latin-1"))
    return query["channel"][0].split(",") if "channel" in query else []


def user_of(scope: Any) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-user":
            return str(value.decode())
    return None


def make_app(store: ChannelStore, **options: Any) -> SSEApp:
    """Channels from ``?channel=a,b``; the user from ``x-user``; mallory may not read."""

    async def authorize(scope: Any, channels: list[str]) -> bool | int:
        user = user_of(scope)
        if user is None:
            return 401
        if user == "gone":
            return 204
        return not (user == "mallory" and "secret" in channels)

    options.setdefault("heartbeat", 0.2)
    return SSEApp(store, query_channel, authorize=authorize, key=user_of, **options)


async def test_app_streams_the_channels_the_resolver_names() -> None:
    async with ChannelStore() as store:
        app = make_app(store)
        async with connect_sse(app, "/", query={"channel": "a,b"}, headers={"x-user": "al"}) as s:
            await store.send("a", "on a")
            await store.send("c", "on c")
            await store.send("b", "on b")
            assert [e.data for e in await s.read_events(2)] == ["on a", "on b"]
            assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert live(store) == 0


@pytest.mark.parametrize(
    ("user", "status", "body"),
    [
        ("mallory", 403, b"403 Forbidden\n"),
        (None, 401, b"401 Unauthorized\n"),
        ("gone", 204, b""),
    ],
)
async def test_app_refusal_sends_a_plain_response_and_subscribes_nothing(
    user: str | None, status: int, body: bytes
) -> None:
    async with ChannelStore() as store:
        headers = {"x-user": user} if user else {}
        query = {"channel": "news,secret"}
        async with connect_sse(make_app(store), "/", query=query, headers=headers) as stream:
            await stream.wait_finished()
            assert stream.status == status
            assert stream.body == body
            assert stream.headers.get("content-type", "text/plain").startswith("text/plain")
            assert stream.headers["cache-control"] == "no-store"
        assert store.statistics().subscribers == 0
        assert store.statistics().channels == 0  # not even touched


@pytest.mark.parametrize(("verdict", "status"), [(False, 403), (None, 403), (True, 200)])
async def test_app_authorize_verdicts(verdict: Any, status: int) -> None:
    async with ChannelStore() as store:
        app = SSEApp(store, "news", authorize=lambda scope, channels: verdict)
        async with connect_sse(app) as stream:
            assert stream.status == status


async def test_app_authorize_returning_nonsense_is_an_error() -> None:
    async with ChannelStore() as store:
        app = SSEApp(store, "news", authorize=lambda scope, channels: 200)
        with pytest.raises(TypeError, match="refusal status"):
            async with connect_sse(app):
                pass
        assert live(store) == 0


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT"])
async def test_app_allows_only_get(method: str) -> None:
    async with (
        ChannelStore() as store,
        connect_sse(SSEApp(store, "news"), method=method) as stream,
    ):
        await stream.wait_finished()
        assert stream.status == 405
        assert stream.headers["allow"] == "GET"


async def test_app_without_channels_is_not_found() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(make_app(store), "/", headers={"x-user": "al"}) as stream,
    ):
        assert stream.status == 404


async def test_app_with_a_bad_channel_name_is_a_bad_request() -> None:
    async with ChannelStore() as store:
        app = SSEApp(store, lambda scope: ["bad\nname"])
        async with connect_sse(app) as stream:
            assert stream.status == 400


async def test_app_after_the_store_closed_is_unavailable() -> None:
    store = ChannelStore()
    await store.aclose()
    async with connect_sse(SSEApp(store, "news")) as stream:
        assert stream.status == 503
        assert stream.headers["retry-after"] == "5"


async def test_app_resolvers_may_be_sync_or_async_and_static() -> None:
    async def channels(scope: Any) -> str:
        return "news"

    async with ChannelStore() as store:
        for app in (
            SSEApp(store, channels),
            SSEApp(store, ["news"]),
            SSEApp(store, "news", key=lambda scope: "k"),
        ):
            async with connect_sse(app) as stream:
                await store.send("news", "x")
                assert [e.data for e in await stream.read_events(1)] == ["x"]


def test_app_rejects_bad_arguments() -> None:
    store = ChannelStore()
    with pytest.raises(TypeError):
        SSEApp(store, [])
    with pytest.raises(TypeError):
        SSEApp(store, "news", authorize="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SSEApp(store, "news", heartbeat=-1)
    with pytest.raises(ValueError):
        SSEApp(store, "news", headers={"connection": "close"})


@pytest.mark.parametrize("via", ["header", "query"])
async def test_app_resumes_from_last_event_id_header_or_query(via: str) -> None:
    async with ChannelStore() as store:
        app = SSEApp(store, "news")
        sent = [await store.send("news", str(n)) for n in range(5)]
        resume_from = sent[1].id
        assert resume_from is not None
        options: dict[str, Any] = (
            {"headers": {"Last-Event-ID": resume_from}}
            if via == "header"
            else {"query": {"last_event_id": resume_from}}
        )
        async with connect_sse(app, **options) as stream:
            assert [e.data for e in await stream.read_events(3)] == ["2", "3", "4"]
            with pytest.raises(TimeoutError):
                await stream.read_events(1, timeout=0.1)


def test_last_event_id_prefers_the_header_and_ignores_empty_values() -> None:
    scope: dict[str, Any] = {"headers": [(b"last-event-id", b"7")], "query_string": b""}
    assert last_event_id(scope) == "7"
    scope["query_string"] = b"last_event_id=3"
    assert last_event_id(scope) == "7"
    scope["headers"] = [(b"last-event-id", b"")]
    assert last_event_id(scope) == "3"
    assert last_event_id({"headers": [], "query_string": b"last_event_id="}) is None
    assert last_event_id({"headers": [], "query_string": b"x=1"}) is None


async def test_app_key_lets_revoke_end_one_users_streams() -> None:
    async with ChannelStore() as store:
        app = make_app(store)
        query = {"channel": "news"}
        async with (
            connect_sse(app, query=query, headers={"x-user": "alice"}) as alice,
            connect_sse(app, query=query, headers={"x-user": "bob"}) as bob,
        ):
            assert store.revoke(key="alice") == 1
            await alice.wait_finished(timeout=1)
            assert alice.finished
            assert not bob.app_done


async def test_app_answers_lifespan_and_closes_the_store_at_shutdown() -> None:
    store = ChannelStore()
    app = SSEApp(store, "news")
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert store.closed


async def test_app_refuses_websockets() -> None:
    async with ChannelStore() as store:
        sent: list[Any] = []

        async def receive() -> Any:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            sent.append(message)

        await SSEApp(store, "news")({"type": "websocket"}, receive, send)
        assert sent == [{"type": "websocket.close", "code": 1008}]


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


# -- under a real server: uvicorn on asyncio, hypercorn on trio ------------------------------------


@pytest.fixture
def server_kind(anyio_backend: str) -> tuple[ServerName, str]:
    return server_for(anyio_backend)


async def wait_live(server: Any, store: ChannelStore, count: int, timeout: float) -> float:
    began = time.monotonic()
    with anyio.fail_after(timeout):
        while await server.acall(live, store) != count:
            await anyio.sleep(0.005)
    return time.monotonic() - began


async def test_real_server_streams_store_events_and_releases_on_disconnect(
    server_kind: tuple[ServerName, str],
) -> None:
    """httpx + httpx-sse reads events sent through the store; leaving frees it within 1 s."""
    server_name, backend = server_kind
    store = ChannelStore()
    with serve_in_thread(make_app(store), server=server_name, backend=backend) as server:
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
    server_kind: tuple[ServerName, str],
) -> None:
    server_name, backend = server_kind
    store = ChannelStore()
    with serve_in_thread(make_app(store), server=server_name, backend=backend) as server:
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
        second = await open_stream(
            server.host,
            server.port,
            "/?channel=news",
            headers={**headers, "last-event-id": resumed_from},
        )
        try:
            missed = await second.read_events(3)
            assert [e.data for e in missed] == ["three", "four", "five"]
            with pytest.raises(TimeoutError):
                await second.read_events(1, timeout=0.2)
            await server.arun(store.send, "news", "six")
            assert [e.data for e in await second.read_events(1)] == ["six"]
            assert [e.data for e in second.events] == ["three", "four", "five", "six"]
        finally:
            await second.aclose()


async def test_real_server_refused_request_gets_403_and_no_stream_byte(
    server_kind: tuple[ServerName, str],
) -> None:
    server_name, backend = server_kind
    store = ChannelStore()
    with serve_in_thread(make_app(store), server=server_name, backend=backend) as server:
        response = await open_stream(
            server.host, server.port, "/?channel=secret", headers={"x-user": "mallory"}
        )
        body = await response.read_to_end()
        await response.aclose()
        assert response.status == 403
        assert body == b"403 Forbidden\n"
        assert not response.headers["content-type"].startswith("text/event-stream")
        assert response.comments == []
        assert await server.acall(lambda: store.statistics().channels) == 0


async def test_real_server_revoked_users_stream_ends_within_a_second(
    server_kind: tuple[ServerName, str],
) -> None:
    server_name, backend = server_kind
    store = ChannelStore()
    with serve_in_thread(make_app(store), server=server_name, backend=backend) as server:
        alice = await open_stream(
            server.host, server.port, "/?channel=news", headers={"x-user": "alice"}
        )
        bob = await open_stream(
            server.host, server.port, "/?channel=news", headers={"x-user": "bob"}
        )
        try:
            await wait_live(server, store, 2, 2)
            began = time.monotonic()
            assert await server.acall(lambda: store.revoke(key="alice")) == 1
            await alice.read_to_end(timeout=1.0)
            assert time.monotonic() - began < 1.0
            assert alice.ended  # the chunked body was terminated: a clean end
            await server.arun(store.send, "news", "still here")
            assert [e.data for e in await bob.read_events(1)] == ["still here"]
        finally:
            await alice.aclose()
            await bob.aclose()


async def test_real_server_half_open_client_is_released_by_the_write_deadline(
    server_kind: tuple[ServerName, str],
) -> None:
    """A client that stops reading but keeps its socket: the write deadline frees it."""
    server_name, backend = server_kind
    store = ChannelStore()
    app = make_app(store, send_timeout=0.5, heartbeat=None)
    with serve_in_thread(app, server=server_name, backend=backend, sndbuf=4096) as server:
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
    server_kind: tuple[ServerName, str],
) -> None:
    """Subscriptions, server tasks and traced memory are back where they were after 1,000 cycles.

    Half the clients leave right after the opening comment, half before reading anything
    (before the first event, possibly before the response started).
    """
    server_name, backend = server_kind
    store = ChannelStore()
    with serve_in_thread(make_app(store), server=server_name, backend=backend) as server:

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


async def test_real_server_stops_promptly_once_the_store_is_closed(
    server_kind: tuple[ServerName, str],
) -> None:
    server_name, backend = server_kind
    store = ChannelStore()
    with serve_in_thread(make_app(store), server=server_name, backend=backend) as server:
        stream = await open_stream(
            server.host, server.port, "/?channel=news", headers={"x-user": "alice"}
        )
        try:
            await wait_live(server, store, 1, 2)
            await server.arun(store.aclose)
            await stream.read_to_end(timeout=2)
            assert stream.ended
            # An idle keep-alive connection would hold hypercorn for its graceful_timeout.
            await stream.aclose()
            took = await anyio.to_thread.run_sync(server.stop)
            assert took < 3.0
        finally:
            await stream.aclose()


async def test_real_server_stop_without_closing_the_store_cancels_streams_after_grace(
    server_kind: tuple[ServerName, str],
) -> None:
    """The fallback: servers drain before the lifespan runs, then cancel what is left.

    Nothing closes the store before the server stops: it waits for its graceful timeout,
    cancels the stream (the subscription is released by the cancellation), and only then
    runs the lifespan shutdown, which closes the store.
    """
    server_name, backend = server_kind
    store = ChannelStore()
    grace = (
        {"timeout_graceful_shutdown": 0.5}
        if server_name == "uvicorn"
        else {"graceful_timeout": 0.5}
    )
    with serve_in_thread(
        make_app(store), server=server_name, backend=backend, options=grace
    ) as server:
        stream = await open_stream(
            server.host, server.port, "/?channel=news", headers={"x-user": "alice"}
        )
        try:
            await wait_live(server, store, 1, 2)
            took = await anyio.to_thread.run_sync(server.stop)
            assert 0.4 <= took < 3.0
            assert store.closed
            assert store.statistics().subscribers == 0
            await stream.read_to_end(timeout=2)
            assert stream.closed or stream.ended
        finally:
            await stream.aclose()


SHUTDOWN_APP = "test_asgi:shutdown_app"


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
    signum, args = (
        (signal.SIGTERM, ()) if server_name == "uvicorn" else (signal.SIGINT, ("--workers", "0"))
    )
    with serve_in_subprocess(
        SHUTDOWN_APP, server=server_name, backend=backend, args=args
    ) as server:
        streams = [await open_stream(server.host, server.port, "/events/") for _ in range(3)]
        try:
            for stream in streams:
                await stream.wait_comments(1)
            began = time.monotonic()
            server.send_signal(signum)
            for stream in streams:
                await stream.read_to_end(timeout=3)
                assert stream.ended  # a clean end of the chunked body, not a reset
                await stream.aclose()  # as a browser would, finding the server gone
            took = await anyio.to_thread.run_sync(server.wait)
            assert time.monotonic() - began < 3.0, server.output
            assert took < 3.0
        finally:
            for stream in streams:
                await stream.aclose()


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
