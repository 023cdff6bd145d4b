"""Streams that end when their credential expires: in process, every front, and over HTTP."""

from __future__ import annotations

import re
import time
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from _servers import serve_in_thread
from sse_channels import ChannelStore, CredentialExpiredError, Event, format_sse
from sse_channels.asgi import (
    EXPIRY_RETRY,
    EventStream,
    EventStreamResponse,
    SSEApp,
    StreamOptions,
    StreamResponder,
    event_stream,
)
from sse_channels.client import Backoff, ConnectionState, EventSource, StateChange, StatusError
from sse_channels.testing import connect_sse

if TYPE_CHECKING:
    from collections.abc import Callable

    from sse_channels import Subscription
    from sse_channels.client import Reconnect

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"
FAREWELL = format_sse(comment="expired", retry=EXPIRY_RETRY)


def soon(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


class Closings:
    """A StreamObserver that notes each stream's close reason and when (wall clock) it closed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, float]] = []

    def opened(self, subscription: Subscription) -> None:
        pass

    def closed(self, subscription: Subscription) -> None:
        self.seen.append((subscription.close_reason, time.time()))

    def write_timed_out(self, subscription: Subscription) -> None:
        pass


# -- the check at the call -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "error"),
    [
        (datetime.now(timezone.utc) - timedelta(seconds=1), CredentialExpiredError),
        (datetime.now() + timedelta(hours=1), ValueError),  # naive
        (time.time() + 60, TypeError),
        ("2099-01-01T00:00:00Z", TypeError),
    ],
)
async def test_every_front_refuses_a_bad_expiry_at_the_call_and_releases_it(
    expires: Any, error: type[Exception]
) -> None:
    responder = StreamResponder(lambda stream, fields: stream)
    fronts: list[Callable[[Subscription], object]] = [
        lambda sub: EventStreamResponse(sub, expires=expires),
        lambda sub: event_stream(sub, expires=expires),
        lambda sub: responder(sub, expires=expires),
    ]
    async with ChannelStore() as store:
        for front in fronts:
            subscription = store.subscribe("news")
            with pytest.raises(error):
                front(subscription)
            assert subscription.closed
        async with store.subscribe("news") as subscription:
            with pytest.raises(error):
                EventStream(subscription, StreamOptions(), expires=expires)


def test_credential_expired_error_says_when_and_what_to_do() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    error = CredentialExpiredError(when)
    assert error.expired_at == when
    assert "2030-01-02T03:04:05+00:00" in str(error)
    assert "authorise the client again" in str(error)


# -- in process ------------------------------------------------------------------------


async def test_served_stream_ends_at_expiry_with_a_retry_hint_and_reason_expired() -> None:
    closings = Closings()
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        expires = soon(0.3)
        response = EventStreamResponse(
            subscription, heartbeat=None, observer=closings, expires=expires
        )
        async with connect_sse(response) as stream:
            await store.send("news", "before")
            await stream.wait_finished(timeout=3)
        assert stream.finished  # a clean end: the browser reconnects
        assert [event.data for event in stream.events] == ["before"]
        assert stream.chunks[-1] == FAREWELL
        assert subscription.close_reason == "expired"
        [(reason, closed_at)] = closings.seen
        assert reason == "expired"
        assert 0 <= closed_at - expires.timestamp() < 0.1


async def test_iterated_stream_yields_the_retry_hint_at_expiry_then_stops() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        expires = soon(0.2)
        chunks = [
            chunk async for chunk in event_stream(subscription, heartbeat=0.05, expires=expires)
        ]
        ended = time.time()
        assert chunks[-1] == FAREWELL
        assert chunks[0] == StreamOptions().opening
        assert subscription.close_reason == "expired"
        assert 0 <= ended - expires.timestamp() < 0.1


async def test_the_expiry_hint_is_the_streams_own_retry_when_it_sets_one() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        stream = event_stream(subscription, retry=250, heartbeat=None, expires=soon(0.1))
        chunks = [chunk async for chunk in stream]
        assert chunks[-1] == format_sse(comment="expired", retry=250)


async def test_a_shorter_max_lifetime_ends_it_first_without_the_expiry_hint() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        stream = event_stream(
            subscription, max_lifetime=0.1, lifetime_jitter=0, heartbeat=None, expires=soon(60)
        )
        chunks = [chunk async for chunk in stream]
        assert chunks == [StreamOptions().opening]
        assert subscription.close_reason == "closed"


async def test_sse_app_authorize_returning_a_datetime_streams_until_then() -> None:
    async with ChannelStore() as store:
        expires = soon(0.3)
        app = SSEApp(store, "news", authorize=lambda scope, names: expires, heartbeat=None)
        async with connect_sse(app) as stream:
            assert stream.status == 200
            await stream.wait_finished(timeout=3)
        assert stream.body.endswith(FAREWELL)
        assert store.statistics().subscribers == 0


@pytest.mark.parametrize(
    ("verdict", "status"),
    [
        (datetime.now(timezone.utc) - timedelta(seconds=5), 401),
        (datetime.now() + timedelta(hours=1), None),  # naive: the hook is wrong
    ],
)
async def test_sse_app_refuses_an_expired_verdict_and_raises_on_a_naive_one(
    verdict: datetime, status: int | None
) -> None:
    async with ChannelStore() as store:
        app = SSEApp(store, "news", authorize=lambda scope, names: verdict)
        if status is None:
            with pytest.raises(ValueError, match="timezone-aware"):
                async with connect_sse(app):
                    pass
        else:
            async with connect_sse(app) as stream:
                await stream.wait_finished(timeout=2)
            assert stream.status == status
            assert b"data:" not in stream.body
        assert store.statistics().subscribers == 0


# -- over HTTP: the signed-token example of docs/security.md ---------------------------


def load_example() -> types.ModuleType:
    found = re.search(r"```python\n(# stream_auth\.py\n.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None, "docs/security.md has no stream_auth.py example"
    module = types.ModuleType("stream_auth")
    exec(compile(found.group(1), "docs/security.md:stream_auth.py", "exec"), module.__dict__)
    return module


async def test_signed_token_stream_ends_at_exp_and_reconnects_with_the_new_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAM_TOKEN_SECRET", "a secret for this test only")
    example = load_example()
    secret: bytes = example.SECRET
    first = example.issue(secret, "ann", ttl=0.8)
    expiries = [example.verify(secret, first)[1].timestamp()]
    changes: list[tuple[float, StateChange]] = []
    received: list[tuple[float, str]] = []

    def refresh(reconnect: Reconnect) -> None:
        # The first reconnection brings a fresh token with a later exp (the second stream
        # ends at it, so it was read); the second a forged one.
        if len(expiries) == 1:
            token = example.issue(secret, "bob", ttl=2.0)
            expiries.append(example.verify(secret, token)[1].timestamp())
        else:
            token = example.issue(b"not our secret", "eve", ttl=60)
        reconnect.headers["cookie"] = f"stream_token={token}"

    def opens() -> int:
        return sum(1 for _, change in changes if change.state is ConnectionState.OPEN)

    with serve_in_thread(example.app) as server:
        store = example.store

        async def send_on_each_stream() -> None:
            for number, word in ((1, "one"), (2, "two")):
                while (
                    opens() < number
                    or await server.acall(lambda: store.statistics().subscribers) != 1
                ):
                    await anyio.sleep(0.01)
                await server.arun(store.send, "news", word)

        source = EventSource(
            server.url + "/",
            headers={"cookie": f"stream_token={first}"},
            refresh=refresh,
            on_state=lambda change: changes.append((time.time(), change)),
            # Without the server's retry: hint the client would wait 2.5-5 s.
            backoff=Backoff(initial=5.0, maximum=30.0),
        )
        with anyio.fail_after(15):
            async with anyio.create_task_group() as group:
                group.start_soon(send_on_each_stream)
                with pytest.raises(StatusError) as refused:  # noqa: PT012
                    async with source:
                        async for item in source:
                            assert isinstance(item, Event)
                            received.append((time.time(), item.data))
        await server.arun(store.aclose)

    assert refused.value.status == 401  # the forged token, checked at the reconnection
    assert [data for _, data in received] == ["one", "two"]
    states = [(change.state, change.error) for _, change in changes]
    assert [state for state, _ in states] == [
        ConnectionState.CONNECTING,
        ConnectionState.OPEN,
        ConnectionState.RECONNECTING,
        ConnectionState.OPEN,
        ConnectionState.RECONNECTING,
        ConnectionState.CLOSED,  # the forged token's 401, which is not retried
    ]
    assert isinstance(states[-1][1], StatusError)
    ends = [(at, change) for at, change in changes if change.state is ConnectionState.RECONNECTING]
    assert len(ends) == len(expiries) == 2
    for (ended, change), expiry in zip(ends, expiries, strict=True):
        assert change.error is None  # the server ended the stream: no failure
        assert 0 <= ended - expiry < 0.1, f"ended {ended - expiry:.3f} s after the expiry"
        assert change.delay is not None
        assert change.delay < 2.5  # the hint replaced the client's initial 5 s delay
