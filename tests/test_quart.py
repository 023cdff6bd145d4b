"""sse_channels.quart: a Quart route under real uvicorn and hypercorn.

Quart runs on asyncio only (trio needs the separate quart-trio package), so it is served
by uvicorn and by hypercorn's asyncio worker. The client runs on asyncio in the test's
thread; each server has its own thread and loop.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, cast

import anyio
import pytest
from quart import Quart, Response, abort, request

import _framework_scenarios as scenarios
from _servers import HERE, RunningServer, serve_in_subprocess, serve_in_thread
from sse_channels import ChannelStore
from sse_channels.quart import last_event_id, sse_response
from sse_channels.testing import connect_sse

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from _servers import ServerName
    from sse_channels._types import ASGIApp


def make_app(store: ChannelStore) -> Quart:
    app = Quart(__name__)

    @app.get("/events")
    async def events() -> Response:
        channel = request.args.get("channel", "news")
        user = request.headers.get("x-user")
        if channel.startswith("private:") and user != "admin":
            abort(403)
        subscription = store.subscribe(channel, last_event_id=last_event_id(request), key=user)
        return sse_response(
            subscription,
            scenarios.OPTIONS.get(request.args.get("options", "")),
            expires=scenarios.expiry(request.args.get("expires_in")),
        )

    return app


@pytest.fixture
def anyio_backend() -> str:
    """The client's event loop; the server runs its own, asyncio (Quart needs it)."""
    return "asyncio"


@pytest.fixture
def serve() -> Callable[..., Any]:
    """Start a Quart app under a real server (asyncio), with a fresh store."""

    @contextlib.contextmanager
    def start(
        server: ServerName = "uvicorn", sndbuf: int | None = None
    ) -> Iterator[tuple[RunningServer, ChannelStore]]:
        store = ChannelStore()
        with serve_in_thread(
            make_app(store),
            server=server,
            backend="asyncio",
            lifespan=False,
            sndbuf=sndbuf,
        ) as running:
            try:
                yield running, store
            finally:
                running.run(store.aclose)

    return start


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_quart_streams_events_then_releases_the_subscription_on_disconnect(
    serve: Callable[..., Any], server: ServerName
) -> None:
    with serve(server) as (running, store):
        assert await scenarios.stream_then_release(running, store) < 1.0


@pytest.mark.anyio
async def test_quart_resumes_with_last_event_id_exactly_once(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.resume_delivers_missed_events_once(running, store)


@pytest.mark.anyio
async def test_quart_refuses_a_private_channel_with_403_and_no_stream_byte(
    serve: Callable[..., Any],
) -> None:
    with serve() as (running, store):
        await scenarios.refusal_sends_403_and_no_stream_byte(running, store)


@pytest.mark.anyio
async def test_quart_revoked_stream_ends_within_a_second(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        assert await scenarios.revoked_stream_ends(running, store) < 1.0


@pytest.mark.anyio
async def test_quart_client_leaving_mid_write_is_released(serve: Callable[..., Any]) -> None:
    with serve(sndbuf=4096) as (running, store):
        assert await scenarios.client_leaving_mid_write_is_released(running, store) < 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_quart_half_open_client_is_released_by_the_write_deadline(
    serve: Callable[..., Any], server: ServerName
) -> None:
    """Quart owns send(): the engine's timer ends the stuck write all the same."""
    with serve(server, sndbuf=4096) as (running, store):
        await scenarios.half_open_client_is_released_by_the_write_deadline(running, store)


@pytest.mark.anyio
async def test_quart_quiet_stream_gets_heartbeats(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.heartbeats_keep_a_quiet_stream_open(running, store)


@pytest.mark.anyio
async def test_quart_stream_ends_cleanly_after_max_lifetime(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.stream_ends_after_max_lifetime(running, store)


@pytest.mark.anyio
async def test_quart_stream_ends_cleanly_when_its_credential_expires(
    serve: Callable[..., Any],
) -> None:
    with serve() as (running, store):
        await scenarios.stream_ends_at_credential_expiry(running, store)


# -- in process, with the testing driver --------------------------------------------------


@pytest.mark.anyio
async def test_quart_stream_outlives_the_response_timeout() -> None:
    """Quart cuts every response after RESPONSE_TIMEOUT; the helper's response has none."""
    async with ChannelStore() as store:
        app = make_app(store)
        app.config["RESPONSE_TIMEOUT"] = 0.1
        async with connect_sse(cast("ASGIApp", app), "/events") as stream:
            await stream.wait_comments(1)
            await anyio.sleep(0.3)
            assert not stream.finished
            assert not stream.app_done
            await store.send("news", "still here")
            assert [e.data for e in await stream.read_events(1)] == ["still here"]
        assert store.statistics().subscribers == 0


@pytest.mark.anyio
async def test_quart_bad_option_raises_and_closes_the_subscription() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        with pytest.raises(ValueError, match="lifetime_jitter"):
            sse_response(subscription, lifetime_jitter=1.5)
        assert subscription.closed
        subscription = store.subscribe("news")
        with pytest.raises(ValueError, match="Content-Length"):
            sse_response(subscription, headers=[("Content-Length", "10")])
        assert subscription.closed


# -- the documentation's example, as a user would run it ----------------------------------


@pytest.mark.anyio
async def test_quart_docs_example_streams_refuses_and_stops_on_sigint(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(scenarios.docs_example("quart.md"), encoding="utf-8")
    with serve_in_subprocess(
        "app:app", env={"PYTHONPATH": os.pathsep.join([str(tmp_path), HERE])}
    ) as process:
        await scenarios.docs_example_works(process.host, process.port, process.send_signal)
        assert process.wait(5) < 3.0
    assert b"Traceback" not in process.output, process.output.decode()
