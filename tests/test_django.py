"""sse_channels.django: an async Django view under ASGI, served by real uvicorn and hypercorn.

Django's ASGI handler is built on asyncio tasks (``asyncio.create_task``/``asyncio.wait``),
so it is served on asyncio only: uvicorn, and hypercorn's asyncio worker; never trio.
The app is ``tests/django_app.py``, configured once per session.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import _framework_scenarios as scenarios
import django_app
from _servers import RunningServer, open_stream, serve_in_subprocess, serve_in_thread
from sse_channels import ChannelStore
from sse_channels.asgi import opening_comment

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from _servers import ServerName


@pytest.fixture
def anyio_backend() -> str:
    """The client's event loop; each server runs its own, asyncio (Django needs it)."""
    return "asyncio"


@pytest.fixture(scope="session")
def django_settings() -> None:
    django_app.configure()


@pytest.fixture
def serve(django_settings: None) -> Iterator[Callable[..., Any]]:
    """Start the Django app under a real server with a fresh store; close both after."""
    import contextlib

    from django.core.asgi import get_asgi_application

    @contextlib.contextmanager
    def start(
        server: ServerName = "uvicorn", sndbuf: int | None = None
    ) -> Iterator[tuple[RunningServer, ChannelStore]]:
        store = django_app.STATE["store"] = ChannelStore()
        backend = "asyncio" if server == "hypercorn" else None
        with serve_in_thread(
            get_asgi_application(),
            server=server,
            backend=backend,
            lifespan=False,
            sndbuf=sndbuf,
        ) as running:
            try:
                yield running, store
            finally:
                running.run(store.aclose)

    yield start
    django_app.STATE.clear()


@pytest.mark.anyio
@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_django_streams_events_then_releases_the_subscription_on_disconnect(
    serve: Callable[..., Any], server: ServerName
) -> None:
    with serve(server) as (running, store):
        assert await scenarios.stream_then_release(running, store) < 1.0


@pytest.mark.anyio
async def test_django_resumes_with_last_event_id_exactly_once(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.resume_delivers_missed_events_once(running, store)


@pytest.mark.anyio
async def test_django_refuses_a_private_channel_with_403_and_no_stream_byte(
    serve: Callable[..., Any],
) -> None:
    with serve() as (running, store):
        await scenarios.refusal_sends_403_and_no_stream_byte(running, store)


@pytest.mark.anyio
async def test_django_revoked_stream_ends_within_a_second(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        assert await scenarios.revoked_stream_ends(running, store) < 1.0


@pytest.mark.anyio
async def test_django_client_leaving_mid_write_is_released(serve: Callable[..., Any]) -> None:
    with serve(sndbuf=4096) as (running, store):
        assert await scenarios.client_leaving_mid_write_is_released(running, store) < 1.0


@pytest.mark.anyio
async def test_django_half_open_client_is_released_by_the_write_deadline(
    serve: Callable[..., Any],
) -> None:
    """Django owns send(): the engine's timer ends the stuck write all the same."""
    with serve(sndbuf=4096) as (running, store):
        await scenarios.half_open_client_is_released_by_the_write_deadline(running, store)


@pytest.mark.anyio
async def test_django_quiet_stream_gets_heartbeats(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.heartbeats_keep_a_quiet_stream_open(running, store)


@pytest.mark.anyio
async def test_django_stream_ends_cleanly_after_max_lifetime(serve: Callable[..., Any]) -> None:
    with serve() as (running, store):
        await scenarios.stream_ends_after_max_lifetime(running, store)


@pytest.mark.anyio
async def test_django_stream_ends_cleanly_when_its_credential_expires(
    serve: Callable[..., Any],
) -> None:
    with serve() as (running, store):
        await scenarios.stream_ends_at_credential_expiry(running, store)


@pytest.mark.anyio
async def test_django_gzip_middleware_leaves_the_stream_uncompressed(
    serve: Callable[..., Any],
) -> None:
    with serve() as (running, store):
        stream = await open_stream(
            running.host, running.port, "/events", headers={"accept-encoding": "gzip, br"}
        )
        try:
            assert stream.headers["content-encoding"] == "identity"
            await stream.wait_comments(1, timeout=2)
            assert stream.body == opening_comment()
            await scenarios.wait_subscribed(running, store)
            await scenarios.send(running, store, "news", "plain text")
            (event,) = await stream.read_events(1, timeout=2)
            assert event.data == "plain text"
        finally:
            await stream.aclose()
        await scenarios.wait_released(running, store)


# -- the helper itself, without a server --------------------------------------------------


@pytest.mark.anyio
async def test_django_bad_option_raises_and_closes_the_subscription(django_settings: None) -> None:
    from sse_channels.django import sse_response

    store = ChannelStore()
    async with store:
        subscription = store.subscribe("news")
        with pytest.raises(ValueError, match="heartbeat"):
            sse_response(subscription, heartbeat=-1)
        assert subscription.closed
        subscription = store.subscribe("news")
        with pytest.raises(ValueError, match="Connection"):
            sse_response(subscription, headers={"Connection": "keep-alive"})
        assert subscription.closed
        subscription = store.subscribe("news")
        with pytest.raises(ValueError, match="'link' is given more than once"):
            sse_response(subscription, headers=[("Link", "</a>"), ("link", "</b>")])
        assert subscription.closed


def test_django_sync_view_gets_a_clear_error(django_settings: None) -> None:
    from sse_channels.django import sse_response

    store = ChannelStore()
    subscription = store.subscribe("news")
    with pytest.raises(RuntimeError, match="async view"):
        sse_response(subscription)
    assert subscription.closed


@pytest.mark.anyio
async def test_django_response_refuses_wsgi_iteration(django_settings: None) -> None:
    from sse_channels.django import sse_response

    async with ChannelStore() as store:
        response = sse_response(store.subscribe("news"))
        with pytest.raises(TypeError, match="ASGI"):
            iter(response)
        await anyio.to_thread.run_sync(response.close)


@pytest.mark.anyio
async def test_django_response_closes_its_stream_when_django_stops_reading(
    django_settings: None,
) -> None:
    """Django closes only the iterator it reads (``aclosing(aiter(response))``) when the
    client leaves mid-write; the subscription must not wait for garbage collection."""
    from contextlib import aclosing

    from sse_channels.django import sse_response

    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        response = sse_response(subscription)  # kept alive, as middleware or a log might
        async with aclosing(aiter(response)) as content:
            assert await anext(content) == opening_comment()
            await store.send("news", "x")
            assert (await anext(content)).endswith(b"data: x\n\n")
        assert subscription.closed
        assert store.statistics().subscribers == 0


@pytest.mark.anyio
async def test_django_unsent_response_releases_its_subscription_on_close(
    django_settings: None,
) -> None:
    """Django closes a response it never sent (client gone first) from a worker thread."""
    from sse_channels.django import sse_response

    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        response = sse_response(subscription)
        closer = threading.Thread(target=response.close)
        closer.start()
        closer.join()
        with anyio.fail_after(1):
            while not subscription.closed:
                await anyio.sleep(0.001)
        assert store.statistics().subscribers == 0


# -- the documentation's example, as a user would run it ----------------------------------


@pytest.mark.anyio
async def test_django_docs_example_streams_refuses_and_stops_on_sigint(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(scenarios.docs_example("django.md"), encoding="utf-8")
    with serve_in_subprocess("app:application", args=("--app-dir", str(tmp_path))) as process:
        await scenarios.docs_example_works(process.host, process.port, process.send_signal)
        assert process.wait(5) < 3.0
    assert b"Traceback" not in process.output, process.output.decode()
