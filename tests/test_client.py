"""sse_channels.client against real servers: uvicorn in a thread, the client on asyncio and trio.

The servers are this library's ``SSEApp`` (resume, ``max_lifetime``, gap signals) and small
scripted ASGI apps (statuses, ``Retry-After``, hand-made streams). ``Watched`` records each
request's headers and counts the requests still open, so a leaked connection shows.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

from _servers import RunningServer, serve_in_thread
from _sse_apps import Scripted, Watched, endless, route, status, stream
from sse_channels import ChannelStore, Event
from sse_channels.asgi import SSEApp
from sse_channels.client import (
    Backoff,
    ConnectionState,
    ContentTypeError,
    EventSource,
    Gap,
    Reconnect,
    StateChange,
    StatusError,
    SyncEventSource,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# Short delays, so that reconnecting costs the suite little; no jitter where delays are checked.
QUICK = Backoff(initial=0.001, maximum=0.05)
EXACT = Backoff(initial=0.05, maximum=0.2, jitter=0.0)
TOTAL = 5_000


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not become true in time")
        time.sleep(0.01)


class News:
    """A store's ``news`` channel behind ``SSEApp``, served by uvicorn."""

    def __init__(self, server: RunningServer, store: ChannelStore, app: Watched) -> None:
        self.server = server
        self.store = store
        self.app = app
        self.url = server.url + "/events"

    def subscribers(self) -> int:
        return self.server.call(lambda: self.store.statistics().subscribers)

    async def publish_paced(self, first: int, count: int) -> None:
        """Send ``count`` events, pausing every 10 so that the stream is cut between them."""
        for n in range(first, first + count):
            await self.store.send("news", str(n))
            if n % 10 == 9:
                await anyio.sleep(0.003)

    def send(self, *data: str) -> list[str]:
        async def run() -> list[str]:
            ids = []
            for text in data:
                event = await self.store.send("news", text)
                assert event.id is not None
                ids.append(event.id)
            return ids

        return self.server.run(run)


def news_server(**options: object) -> Iterator[News]:
    store = ChannelStore(history=10_000)
    app = Watched(route({"/events": SSEApp(store, "news", **options)}))  # type: ignore[arg-type]
    with serve_in_thread(app) as server:
        yield News(server, store, app)
        server.run(store.aclose)


@pytest.fixture
def news() -> Iterator[News]:
    yield from news_server()


@pytest.fixture
def dropping() -> Iterator[News]:
    """The server ends every stream after about 0.2 s (``max_lifetime``)."""
    yield from news_server(max_lifetime=0.2, lifetime_jitter=0.25, heartbeat=None)


@contextlib.contextmanager
def served(app: Scripted) -> Iterator[tuple[str, Watched]]:
    """``app`` served by uvicorn: its URL and the record of its requests."""
    watched = Watched(app)
    with serve_in_thread(watched) as server:
        yield server.url + "/", watched


async def read_all(source: EventSource, into: list[Event | Gap]) -> None:
    async for item in source:
        into.append(item)


def data_of(items: list[Event | Gap]) -> list[str]:
    assert not [item for item in items if isinstance(item, Gap)]
    return [item.data for item in items if isinstance(item, Event)]


# -- exactly once across many reconnections -------------------------------------------------


@pytest.mark.anyio
async def test_client_yields_5000_events_once_in_order_while_max_lifetime_drops_it(
    dropping: News,
) -> None:
    received: list[Event | Gap] = []
    ready = anyio.Event()
    async with EventSource(dropping.url, backoff=QUICK) as source:

        async def read() -> None:
            async for item in source:
                received.append(item)
                ready.set()
                if len(received) == TOTAL + 1:
                    return

        async with anyio.create_task_group() as group:
            group.start_soon(read)
            await until(lambda: dropping.subscribers() == 1)
            await dropping.server.arun(dropping.store.send, "news", "ready")
            await ready.wait()
            await dropping.server.arun(dropping.publish_paced, 0, TOTAL)
        assert data_of(received) == ["ready", *map(str, range(TOTAL))]
        assert source.connections >= 3
    # Every reconnection resumed from the id of the last event the client had.
    ids = dropping.app.last_event_ids()
    assert len(ids) == source.connections
    assert ids[0] is None
    assert all(ids[1:])


@pytest.fixture
def ready_on_connect(dropping: News) -> News:
    """Sends "ready" as soon as the first client subscribes (a sync test is busy reading)."""

    def when_subscribed() -> None:
        wait_until(lambda: dropping.subscribers() == 1)
        dropping.send("ready")

    threading.Thread(target=when_subscribed, daemon=True).start()
    return dropping


def test_sync_client_yields_5000_events_once_in_order_while_max_lifetime_drops_it(
    ready_on_connect: News,
) -> None:
    dropping = ready_on_connect
    received: list[Event | Gap] = []
    publisher = threading.Thread(
        target=dropping.server.run, args=(dropping.publish_paced, 0, TOTAL)
    )
    with SyncEventSource(dropping.url, backoff=QUICK) as source:
        for item in source:
            received.append(item)
            if len(received) == 1:
                publisher.start()
            if len(received) == TOTAL + 1:
                break
        publisher.join(10)
        assert data_of(received) == ["ready", *map(str, range(TOTAL))]
        assert source.connections >= 3
    ids = dropping.app.last_event_ids()
    assert len(ids) == source.connections
    assert ids[0] is None
    assert all(ids[1:])


# -- statuses, Retry-After, backoff -----------------------------------------------------------


@pytest.fixture
def no_content() -> Iterator[tuple[str, Watched]]:
    with served(Scripted([status(204)])) as pair:
        yield pair


@pytest.mark.anyio
async def test_client_stops_cleanly_on_204(no_content: tuple[str, Watched]) -> None:
    url, app = no_content
    changes: list[StateChange] = []
    async with EventSource(url, backoff=QUICK, on_state=changes.append) as source:
        assert [item async for item in source] == []
        assert source.closed
    assert len(app.requests) == 1
    assert [change.state for change in changes] == [
        ConnectionState.CONNECTING,
        ConnectionState.CLOSED,
    ]


def test_sync_client_stops_cleanly_on_204(no_content: tuple[str, Watched]) -> None:
    url, app = no_content
    with SyncEventSource(url, backoff=QUICK) as source:
        assert list(source) == []
        assert list(source) == []  # and stays stopped
    assert len(app.requests) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("code", [401, 403, 404, 410])
async def test_client_raises_the_typed_status_error_on_4xx_without_retrying(code: int) -> None:
    with served(Scripted([status(code, {"www-authenticate": "Bearer"})])) as (url, app):
        async with EventSource(url, backoff=QUICK) as source:
            with pytest.raises(StatusError) as raised:
                await source.__anext__()
            assert raised.value.status == code
            assert raised.value.headers["www-authenticate"] == "Bearer"
            assert source.closed
            assert source.state is ConnectionState.CLOSED
            with pytest.raises(StopAsyncIteration):
                await source.__anext__()
        assert len(app.requests) == 1


def test_sync_client_raises_the_typed_status_error_on_401() -> None:
    with served(Scripted([status(401)])) as (url, app):
        with SyncEventSource(url, backoff=QUICK) as source, pytest.raises(StatusError) as raised:
            next(source)
        assert raised.value.status == 401
        assert len(app.requests) == 1


@pytest.mark.anyio
async def test_client_retries_5xx_408_and_429_then_reads_the_stream() -> None:
    ok = stream(b"id: 1\ndata: finally\n\n", hold=30)
    responders = [status(500), status(408), status(429), status(502), ok]
    with served(Scripted(responders)) as (url, app):
        changes: list[StateChange] = []
        async with EventSource(url, backoff=QUICK, on_state=changes.append) as source:
            item = await source.__anext__()
        assert isinstance(item, Event)
        assert item.data == "finally"
        assert len(app.requests) == 5
        errors = [change.error for change in changes if change.error is not None]
        assert [getattr(error, "status", None) for error in errors] == [500, 408, 429, 502]
        assert [change.attempt for change in changes if change.error] == [1, 2, 3, 4]


@pytest.mark.anyio
async def test_client_retries_network_errors_until_the_strategy_gives_up() -> None:
    from _servers import free_socket

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: every connection is refused
    seen: list[tuple[type[Exception], int]] = []

    def three_tries(error: Exception, attempt: int) -> bool:
        seen.append((type(error), attempt))
        return attempt < 3

    source = EventSource(f"http://127.0.0.1:{port}/", backoff=QUICK, retry=three_tries)
    async with source:
        with pytest.raises(httpx.ConnectError):
            await source.__anext__()
    assert seen == [(httpx.ConnectError, 1), (httpx.ConnectError, 2), (httpx.ConnectError, 3)]
    assert source.state is ConnectionState.CLOSED


@pytest.mark.anyio
async def test_client_waits_as_long_as_retry_after_says_on_503() -> None:
    ok = stream(b"data: back\n\n", hold=30)
    with served(Scripted([status(503, {"retry-after": "1"}), ok])) as (url, app):
        changes: list[StateChange] = []
        async with EventSource(url, backoff=EXACT, on_state=changes.append) as source:
            item = await source.__anext__()
        assert isinstance(item, Event)
        assert item.data == "back"
        first, second = app.requests
        assert second.at - first.at >= 1.0
        waits = [change.delay for change in changes if change.state is ConnectionState.RECONNECTING]
        assert waits == [1.0]  # not the backoff's 0.05


@pytest.mark.anyio
async def test_client_backoff_grows_caps_and_resets_after_a_healthy_connection() -> None:
    # Four refusals (0.05, 0.1, 0.2, then the cap 0.2), a stream that stays open for 1 s
    # (healthy: longer than reset_after), then refusals again: back to 0.05.
    healthy = stream(b"data: up\n\n", hold=1.0)
    responders = [status(503)] * 4 + [healthy] + [status(503)] * 2 + [stream(hold=30)]
    policy = Backoff(initial=0.05, maximum=0.2, jitter=0.0, reset_after=0.5)
    with served(Scripted(responders)) as (url, app):
        changes: list[StateChange] = []
        received: list[Event | Gap] = []
        source = EventSource(url, backoff=policy, on_state=changes.append)
        async with source, anyio.create_task_group() as group:
            group.start_soon(read_all, source, received)
            await until(lambda: len(app.requests) == 8)
            await source.aclose()
        assert data_of(received) == ["up"]
        waits = [change.delay for change in changes if change.state is ConnectionState.RECONNECTING]
        assert waits == pytest.approx([0.05, 0.1, 0.2, 0.2, 0.05, 0.1, 0.2])
        # The server saw the client wait at least that long each time.
        times = [request.at for request in app.requests]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        for gap, wait in zip(gaps, waits, strict=False):
            assert wait is not None
            assert gap >= wait * 0.95
        assert gaps[4] >= 1.0  # the healthy connection itself


@pytest.mark.anyio
async def test_client_backoff_does_not_reset_after_a_short_connection() -> None:
    short = stream(b"data: blip\n\n")
    responders = [status(503), status(503), short, status(503), stream(hold=30)]
    policy = Backoff(initial=0.05, maximum=10.0, jitter=0.0, reset_after=30.0)
    with served(Scripted(responders)) as (url, app):
        changes: list[StateChange] = []
        received: list[Event | Gap] = []
        source = EventSource(url, backoff=policy, on_state=changes.append)
        async with source, anyio.create_task_group() as group:
            group.start_soon(read_all, source, received)
            await until(lambda: len(app.requests) == 5)
            await source.aclose()
        assert data_of(received) == ["blip"]
        waits = [change.delay for change in changes if change.state is ConnectionState.RECONNECTING]
        assert waits == pytest.approx([0.05, 0.1, 0.2, 0.4])


@pytest.mark.anyio
async def test_client_takes_the_servers_retry_as_its_base_delay() -> None:
    responders = [stream(b"retry: 120\nid: a\ndata: one\n\n"), endless(b"data: two\n\n")]
    with served(Scripted(responders)) as (url, app):
        changes: list[StateChange] = []
        policy = Backoff(initial=5.0, maximum=30.0, jitter=0.0)
        async with EventSource(url, backoff=policy, on_state=changes.append) as source:
            first, second = await source.__anext__(), await source.__anext__()
            assert source.retry == 120
        assert isinstance(first, Event)
        assert isinstance(second, Event)
        assert (first.data, second.data) == ("one", "two")
        assert second.id == "a"  # no id line on the new connection: the browser keeps "a"
        waits = [change.delay for change in changes if change.state is ConnectionState.RECONNECTING]
        assert waits == pytest.approx([0.12])
        assert app.last_event_ids() == [None, "a"]


@pytest.mark.anyio
async def test_client_refuses_a_200_that_is_not_an_event_stream() -> None:
    with served(Scripted([stream(b"<html>", content_type=b"text/html")])) as (url, app):
        async with EventSource(url, backoff=QUICK) as source:
            with pytest.raises(ContentTypeError) as raised:
                await source.__anext__()
        assert raised.value.content_type == "text/html"
        assert len(app.requests) == 1


# -- the refresh hook --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_refresh_hook_runs_once_per_reconnect_and_its_header_reaches_the_server(
    dropping: News,
) -> None:
    calls: list[Reconnect] = []

    async def refresh(request: Reconnect) -> None:
        await anyio.sleep(0)  # an async hook, e.g. a token endpoint
        calls.append(request)
        request.headers["Authorization"] = f"Bearer token-{len(calls)}"
        request.params["attempt"] = str(len(calls))

    received: list[Event | Gap] = []
    source = EventSource(
        dropping.url, backoff=QUICK, refresh=refresh, headers={"authorization": "Bearer token-0"}
    )
    async with source, anyio.create_task_group() as group:
        group.start_soon(read_all, source, received)
        await until(lambda: dropping.subscribers() == 1)
        await dropping.server.arun(dropping.store.send, "news", "ready")
        await until(lambda: len(received) == 1)
        for round in range(3):  # each round, then the server drops the stream
            await dropping.server.arun(dropping.publish_paced, round * 100, 100)
            await until(lambda: len(dropping.app.requests) >= round + 2)  # noqa: B023
        await until(lambda: len(received) == 301)
        await source.aclose()
    assert data_of(received) == ["ready", *map(str, range(300))]
    requests = dropping.app.requests
    assert len(requests) >= 4
    assert len(calls) == len(requests) - 1
    # Each connection carried the header set by the hook just before it, and only that one
    # (Watched joins a repeated header, so a duplicate would show).
    assert [r.headers["authorization"] for r in requests] == [
        f"Bearer token-{n}" for n in range(len(requests))
    ]
    assert [r.query.get("attempt") for r in requests] == [None, *map(str, range(1, len(calls) + 1))]
    assert all(call.last_event_id for call in calls)


def test_sync_refresh_hook_runs_once_per_reconnect() -> None:
    responders = [
        stream(b"id: 1\ndata: a\n\n"),
        stream(b"id: 2\ndata: b\n\n"),
        endless(b"data: c\n\n"),
    ]
    with served(Scripted(responders)) as (url, app):
        calls: list[str] = []

        def refresh(request: Reconnect) -> None:
            calls.append(request.last_event_id)
            request.headers["x-token"] = f"t{len(calls)}"

        with SyncEventSource(url, backoff=QUICK, refresh=refresh) as source:
            assert data_of([next(source) for _ in range(3)]) == ["a", "b", "c"]
        assert calls == ["1", "2"]
        assert [r.headers.get("x-token") for r in app.requests] == [None, "t1", "t2"]


# -- cancellation and close ------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancelling_a_read_mid_stream_leaves_no_open_connection_on_the_server(
    news: News,
) -> None:
    source = EventSource(news.url, backoff=QUICK)
    received: list[Event | Gap] = []
    async with anyio.create_task_group() as group:

        async def read() -> None:
            async for item in source:
                received.append(item)

        group.start_soon(read)
        await until(lambda: news.subscribers() == 1)
        await news.server.arun(news.store.send, "news", "one")
        await until(lambda: len(received) == 1)
        assert news.app.open == 1
        group.cancel_scope.cancel()
    # Nothing closed the source: the cancelled read itself closed its connection.
    assert not source.closed
    await until(lambda: news.app.open == 0 and news.subscribers() == 0)
    assert source.state is ConnectionState.RECONNECTING
    # Reading again reconnects at once and resumes after "one".
    await news.server.arun(news.store.send, "news", "two")
    item = await source.__anext__()
    assert isinstance(item, Event)
    assert item.data == "two"
    await source.aclose()
    await until(lambda: news.app.open == 0)
    assert news.app.last_event_ids()[-1] == received[0].id


@pytest.mark.anyio
async def test_aclose_from_another_task_ends_a_waiting_read_at_once(news: News) -> None:
    source = EventSource(news.url, backoff=QUICK)
    ended = anyio.Event()
    async with anyio.create_task_group() as group:

        async def read() -> None:
            async for _ in source:
                pass
            ended.set()

        group.start_soon(read)
        await until(lambda: news.subscribers() == 1)
        await source.aclose()
        assert source.closed
        with anyio.fail_after(5):
            await ended.wait()
    assert source.state is ConnectionState.CLOSED
    await until(lambda: news.app.open == 0 and news.subscribers() == 0)


@pytest.mark.anyio
async def test_aclose_during_the_backoff_wait_ends_it_at_once() -> None:
    with served(Scripted([status(503)])) as (url, app):
        source = EventSource(url, backoff=Backoff(initial=60.0, maximum=60.0))
        async with anyio.create_task_group() as group:

            async def read() -> None:
                with pytest.raises(StopAsyncIteration):
                    await source.__anext__()

            group.start_soon(read)
            await until(lambda: source.state is ConnectionState.RECONNECTING)
            with anyio.fail_after(5):
                await source.aclose()
        assert len(app.requests) == 1


def test_sync_close_from_another_thread_ends_a_blocked_read(news: News) -> None:
    source = SyncEventSource(news.url, backoff=QUICK)
    outcome: list[object] = []

    def read() -> None:
        outcome.append(list(source))

    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: news.subscribers() == 1)
    source.close()
    reader.join(5)
    assert not reader.is_alive()
    assert outcome == [[]]
    assert source.state is ConnectionState.CLOSED
    wait_until(lambda: news.app.open == 0 and news.subscribers() == 0)


# -- what the client yields --------------------------------------------------------------------


@pytest.mark.anyio
async def test_client_yields_a_gap_as_a_typed_value_when_resuming_from_an_unknown_id(
    news: News,
) -> None:
    async with EventSource(news.url, last_event_id="nope-1", backoff=QUICK) as source:
        item = await source.__anext__()
        assert isinstance(item, Gap)
        assert (item.reason, item.channel) == ("unknown_id", "news")
        assert item.id == source.last_event_id
        news.send("after")  # blocks this loop briefly; the event waits in the socket
        after = await source.__anext__()
        assert isinstance(after, Event)
        assert after.data == "after"
    assert news.app.last_event_ids() == ["nope-1"]


@pytest.mark.anyio
async def test_client_does_not_yield_the_opening_comment_and_retry_block_as_a_message(
    news: News,
) -> None:
    # SSEApp opens with ": ok" (and "retry:" when set); httpx-sse reports that block as an
    # empty message. Here the first item is the first real event.
    async with EventSource(news.url, backoff=QUICK) as source:
        async with anyio.create_task_group() as group:

            async def send_soon() -> None:
                await until(lambda: news.subscribers() == 1)
                await news.server.arun(news.store.send, "news", "first")

            group.start_soon(send_soon)
            item = await source.__anext__()
        assert isinstance(item, Event)
        assert item.data == "first"


@pytest.mark.anyio
async def test_state_changes_are_observed_through_a_reconnect_and_close() -> None:
    responders = [stream(b"data: one\n\n"), endless(b"data: two\n\n")]
    with served(Scripted(responders)) as (url, _):
        changes: list[StateChange] = []
        source = EventSource(url, backoff=QUICK, on_state=changes.append)
        assert source.state is ConnectionState.CLOSED
        async with source:
            await source.__anext__()
            await source.__anext__()
        states = [change.state.value for change in changes]
        assert states == ["connecting", "open", "reconnecting", "open", "closed"]
        assert changes[2].error is None  # the server ended the stream: not an error
