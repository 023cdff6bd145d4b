"""sse_channels.litestar: a Litestar route under real uvicorn (asyncio) and hypercorn (trio).

Litestar runs on both event loops, so every scenario runs on both servers. The client runs
on asyncio in the test's thread (each server has its own thread and loop); the in-process
tests run Litestar itself on asyncio and on trio.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, cast

import anyio
import pytest
from litestar import Litestar, Request, get
from litestar.exceptions import PermissionDeniedException
from litestar.response import Stream  # noqa: TC002 (Litestar reads handler annotations)

import _framework_scenarios as scenarios
from _servers import HERE, RunningServer, serve_in_subprocess, serve_in_thread, server_for
from sse_channels import ChannelStore
from sse_channels.asgi import EventStreamResponse
from sse_channels.litestar import last_event_id, sse_response
from sse_channels.testing import connect_sse

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from sse_channels._types import ASGIApp


def make_app(store: ChannelStore) -> Litestar:
    @get("/events")
    async def events(request: Request[Any, Any, Any]) -> Stream:
        channel = request.query_params.get("channel", "news")
        user = request.headers.get("x-user")
        if channel.startswith("private:") and user != "admin":
            raise PermissionDeniedException("forbidden")
        subscription = store.subscribe(channel, last_event_id=last_event_id(request), key=user)
        options = scenarios.OPTIONS.get(request.query_params.get("options", ""))
        expires = scenarios.expiry(request.query_params.get("expires_in"))
        return sse_response(subscription, options, expires=expires)

    return Litestar([events])


SERVERS = [pytest.param(*server_for(b), id="-".join(server_for(b))) for b in ("asyncio", "trio")]


@pytest.fixture
def anyio_backend() -> str:
    """The client's event loop; the server runs its own (see ``serve``)."""
    return "asyncio"


@pytest.fixture(params=[p.values for p in SERVERS], ids=[str(p.id) for p in SERVERS])
def serve(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Start a Litestar app under uvicorn (asyncio) or hypercorn (trio), with a fresh store."""
    server, backend = request.param

    @contextlib.contextmanager
    def start(sndbuf: int | None = None) -> Iterator[tuple[RunningServer, ChannelStore]]:
        store = ChannelStore()
        with serve_in_thread(
            make_app(store), server=server, backend=backend, lifespan=False, sndbuf=sndbuf
        ) as running:
            try:
                yield running, store
            finally:
                running.run(store.aclose)

    return start


@pytest.mark.anyio
async def test_litestar_streams_events_then_releases_the_subscription_on_disconnect(
    serve: Callable[..., Any],
) -> None:
    with serve() as (running, store):
        assert await scenarios.stream_then_release(running, store) < 1.0


@pytest.mark.anyio
async def test_litestar_resumes_with_last_event_id_exactly_once(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.resume_delivers_missed_events_once(running, store)


@pytest.mark.anyio
async def test_litestar_refuses_a_private_channel_with_403_and_no_stream_byte(
    serve: Callable[..., Any],
) -> None:
    with serve() as (running, store):
        await scenarios.refusal_sends_403_and_no_stream_byte(running, store)


@pytest.mark.anyio
async def test_litestar_revoked_stream_ends_within_a_second(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        assert await scenarios.revoked_stream_ends(running, store) < 1.0


@pytest.mark.anyio
async def test_litestar_client_leaving_mid_write_is_released(serve: Callable[..., Any]) -> None:
    with serve(sndbuf=4096) as (running, store):
        assert await scenarios.client_leaving_mid_write_is_released(running, store) < 1.0


@pytest.mark.anyio
async def test_litestar_half_open_client_is_released_by_the_write_deadline(
    serve: Callable[..., Any],
) -> None:
    with serve(sndbuf=4096) as (running, store):
        await scenarios.half_open_client_is_released_by_the_write_deadline(running, store)


@pytest.mark.anyio
async def test_litestar_quiet_stream_gets_heartbeats(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.heartbeats_keep_a_quiet_stream_open(running, store)


@pytest.mark.anyio
async def test_litestar_stream_ends_cleanly_after_max_lifetime(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.stream_ends_after_max_lifetime(running, store)


@pytest.mark.anyio
async def test_litestar_stream_ends_cleanly_when_its_credential_expires(
    serve: Callable[..., Any],
) -> None:
    with serve() as (running, store):
        await scenarios.stream_ends_at_credential_expiry(running, store)


# -- in process, with the testing driver --------------------------------------------------


BOTH_LOOPS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


def http_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }


@pytest.mark.anyio
@BOTH_LOOPS
async def test_litestar_stream_ends_quietly_and_is_released_when_send_raises_oserror() -> None:
    """ASGI 2.4 lets a server raise OSError from send() once the client is gone: the
    engine ends the stream quietly, as under every other front, and releases it."""
    async with ChannelStore() as store:
        app = make_app(store)
        started = False

        async def receive() -> dict[str, Any]:
            if not started:
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()  # the server has not noticed the client left
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            if message["type"] == "http.response.body":
                raise ConnectionResetError("the client is gone")

        with anyio.fail_after(5):
            await app(http_scope(), receive, send)  # type: ignore[arg-type]
        assert started
        assert store.statistics().subscribers == 0


@pytest.mark.anyio
@BOTH_LOOPS
async def test_connect_sse_leaving_a_litestar_stream_at_once_is_no_error() -> None:
    """Litestar wraps the OSError that the driver's send raises after the client left."""
    async with ChannelStore() as store:
        app = make_app(store)
        for _ in range(3):
            async with connect_sse(cast("ASGIApp", app), "/events") as stream:
                pass
            assert stream.status == 200
        assert store.statistics().subscribers == 0


@pytest.mark.anyio
@BOTH_LOOPS
async def test_litestar_bad_option_raises_and_closes_the_subscription() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        with pytest.raises(ValueError, match="retry"):
            sse_response(subscription, retry=-1)
        assert subscription.closed
        subscription = store.subscribe("news")
        with pytest.raises(ValueError, match="Content-Encoding"):
            sse_response(subscription, headers={"Content-Encoding": "gzip"})
        assert subscription.closed
        subscription = store.subscribe("news")
        with pytest.raises(ValueError, match="'link' is given more than once"):
            sse_response(subscription, headers=[("Link", "</a>"), ("link", "</b>")])
        assert subscription.closed


@pytest.mark.anyio
@BOTH_LOOPS
async def test_litestar_handler_may_return_the_core_response_for_a_write_deadline() -> None:
    """What docs/litestar.md offers instead: a handler returning the core ASGI response."""
    async with ChannelStore() as store:

        @get("/events")
        async def events(request: Request[Any, Any, Any]) -> EventStreamResponse:
            subscription = store.subscribe("news", last_event_id=last_event_id(request))
            return EventStreamResponse(subscription, send_timeout=0.2)

        async with connect_sse(cast("ASGIApp", Litestar([events])), "/events") as stream:
            assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
            await store.send("news", "one")
            assert [e.data for e in await stream.read_events(1)] == ["one"]
            stream.stop_reading()
            await store.send("news", "two")
            await stream.wait_finished(timeout=2)  # the write deadline gave up on it
        assert store.statistics().subscribers == 0


# -- the documentation's example, as a user would run it ----------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("server", "backend"), SERVERS)
async def test_litestar_docs_example_streams_refuses_and_stops_on_sigint(
    tmp_path: Path, server: Any, backend: str
) -> None:
    (tmp_path / "app.py").write_text(scenarios.docs_example("litestar.md"), encoding="utf-8")
    with serve_in_subprocess(
        "app:app",
        server=server,
        backend=backend,
        args=("--graceful-timeout", "1") if server == "hypercorn" else (),
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), HERE])},
    ) as process:
        await scenarios.docs_example_works(
            process.host, process.port, process.send_signal, clean_end=server == "uvicorn"
        )
        assert process.wait(5) < 3.0
    assert b"Traceback" not in process.output, process.output.decode()
