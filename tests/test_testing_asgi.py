"""sse_channels.testing.connect_sse: the in-process ASGI driver for event streams."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from sse_channels import ChannelStore
from sse_channels.asgi import EventStreamResponse
from sse_channels.testing import SSEStream, connect_sse

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio


async def echo_scope(scope: Any, receive: Any, send: Any) -> None:
    """A plain app that answers with what it saw of the request."""
    message = await receive()
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    text = f"{scope['method']} {scope['path']} {scope['query_string'].decode()} "
    text += f"{headers.get('x-a', '')} {message['body'].decode()}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-b", b"1")]})
    await send({"type": "http.response.body", "body": text.encode()})


async def test_driver_builds_the_request_scope_and_reports_the_response() -> None:
    async with connect_sse(
        echo_scope,
        "/some%20path",
        method="post",
        headers={"X-A": "hello"},
        query={"q": "a b"},
        body=b"payload",
    ) as stream:
        await stream.wait_finished()
        assert stream.status == 200
        assert stream.headers == {"x-b": "1"}
        assert stream.text == "POST /some path q=a+b hello payload"
        assert stream.finished
        assert stream.app_done


async def test_driver_takes_the_query_from_the_path_too() -> None:
    async with connect_sse(echo_scope, "/p?x=1") as stream:
        await stream.wait_finished()
        assert stream.text.startswith("GET /p x=1")


async def test_driver_reads_events_in_order_and_times_out_when_none_come() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(EventStreamResponse(store.subscribe("news"))) as stream,
    ):
        for n in range(3):
            await store.send("news", str(n))
        assert [e.data for e in await stream.read_events(2)] == ["0", "1"]
        assert [e.data for e in await stream.read_events(1)] == ["2"]
        with pytest.raises(TimeoutError):
            await stream.read_events(1, timeout=0.05)
        assert stream.comments == [" ok"]
        assert len(stream.events) == 3


async def test_driver_returns_fewer_events_when_the_response_ends() -> None:
    async with (
        ChannelStore() as store,
        connect_sse(EventStreamResponse(store.subscribe("news"))) as stream,
    ):
        await store.send("news", "last")
        await stream.wait_comments(1)
        await anyio.sleep(0.05)  # "last" is written before the revocation below
        store.revoke(channel="news")
        assert [e.data for e in await stream.read_events(5)] == ["last"]
        assert stream.finished


async def test_driver_disconnect_makes_receive_return_http_disconnect() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen.append((await receive())["type"])
        seen.append((await receive())["type"])

    async with connect_sse(app) as stream:
        await stream.disconnect()
        assert stream.disconnected
    assert seen == ["http.request", "http.disconnect"]


async def test_driver_disconnects_on_exit_and_waits_for_the_app() -> None:
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive())["type"] != "http.disconnect":
            pass
        done.set()

    async with connect_sse(app):
        pass
    assert done.is_set()


async def test_driver_send_blocks_while_the_client_stops_reading() -> None:
    go = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await go.wait()
        await send({"type": "http.response.body", "body": b": a\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b": b\n\n", "more_body": False})

    async with connect_sse(app) as stream:
        stream.stop_reading()
        go.set()
        await anyio.sleep(0.05)
        assert stream.chunks == []
        stream.resume_reading()
        await stream.wait_finished()
        assert stream.chunks == [b": a\n\n", b": b\n\n"]
        assert stream.comments == [" a", " b"]


async def test_driver_send_after_disconnect_raises_oserror_which_is_not_an_app_error() -> None:
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()
        await receive()  # http.disconnect
        try:
            await send({"type": "http.response.body", "body": b"late"})
        except OSError as exc:
            raised.append(exc)
            raise

    async with connect_sse(app) as stream:
        await stream.disconnect()
    assert stream.error is None
    assert len(raised) == 1


async def test_driver_reraises_the_apps_exception() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        async with connect_sse(app) as stream:
            await stream.wait_finished()


async def test_driver_reraises_an_exception_before_the_response_started() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise LookupError("early")

    with pytest.raises(LookupError, match="early"):
        async with connect_sse(app):
            pass


async def test_driver_complains_when_the_app_returns_without_a_response() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return

    with pytest.raises(RuntimeError, match="without starting a response"):
        async with connect_sse(app):
            pass


async def test_driver_times_out_when_nothing_is_sent() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep_forever()

    with pytest.raises(TimeoutError):
        async with connect_sse(app, timeout=0.05):
            pass


async def test_driver_shows_the_test_bodys_own_assertion_unwrapped() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await anyio.sleep_forever()

    with pytest.raises(AssertionError, match="mine"):
        async with connect_sse(app):
            raise AssertionError("mine")


@pytest.mark.parametrize(
    "message",
    [
        {"type": "http.response.body", "body": b"x"},
        {"type": "http.response.start", "status": 200},
        {"type": "http.response.trailers"},
    ],
)
async def test_driver_rejects_messages_out_of_order(message: dict[str, Any]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if message["type"] != "http.response.body":
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(message)

    with pytest.raises(RuntimeError):
        async with connect_sse(app) as stream:
            await stream.wait_finished()


def test_stream_is_exported_from_the_testing_module() -> None:
    assert SSEStream.__module__ == "sse_channels.testing"


async def test_driver_resume_reading_releases_a_send_after_stop_reading_twice() -> None:
    go = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await go.wait()
        await send({"type": "http.response.body", "body": b": a\n\n", "more_body": False})

    async with connect_sse(app, timeout=1) as stream:
        stream.stop_reading()
        go.set()
        await anyio.wait_all_tasks_blocked()  # the app's send is blocked now
        stream.stop_reading()
        stream.resume_reading()
        await stream.wait_finished(timeout=1)
        assert stream.comments == [" a"]


async def test_driver_keeps_the_cause_of_the_test_bodys_exception() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await anyio.sleep_forever()

    with pytest.raises(AssertionError, match="mine") as caught:
        async with connect_sse(app):
            raise AssertionError("mine") from LookupError("why")
    assert isinstance(caught.value.__cause__, LookupError)


async def test_driver_keeps_the_context_of_the_apps_exception() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            int("not a number")
        except ValueError:
            raise LookupError("early") from None

    with pytest.raises(LookupError, match="early") as caught:
        async with connect_sse(app):
            pass
    assert caught.value.__suppress_context__
    assert isinstance(caught.value.__context__, ValueError)

    async def chained(scope: Any, receive: Any, send: Any) -> None:
        try:
            int("not a number")
        except ValueError as exc:
            raise LookupError("early") from exc

    with pytest.raises(LookupError) as caught:
        async with connect_sse(chained):
            pass
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.parametrize("started", [False, True])
async def test_driver_reraises_the_apps_exception_group_as_it_is(started: bool) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if started:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ExceptionGroup("the app's own", [ValueError("inner")])

    with pytest.raises(ExceptionGroup, match="the app's own"):
        async with connect_sse(app) as stream:
            await stream.wait_finished()


async def test_driver_shows_the_apps_exception_when_the_test_body_fails_because_of_it() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise LookupError("boom")

    async def read_one(stream: SSEStream) -> None:
        assert await stream.read_events(1), "no event"

    with pytest.raises(AssertionError, match="no event") as caught:
        async with connect_sse(app) as stream:
            await read_one(stream)
    assert isinstance(caught.value.__cause__, LookupError)
    assert stream.error is caught.value.__cause__
