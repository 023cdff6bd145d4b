"""sse_channels.starlette: SSEResponse returned from Starlette and FastAPI routes."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request  # noqa: TC002 (FastAPI reads annotations at runtime)
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from _servers import read_sse_then_leave, serve_in_thread, server_for
from sse_channels import ChannelStore, CredentialExpiredError, format_sse
from sse_channels.asgi import EXPIRY_RETRY, SSE_HEADERS, StreamOptions
from sse_channels.starlette import SSEResponse, last_event_id
from sse_channels.testing import connect_sse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio


def make_app(store: ChannelStore, **options: Any) -> Starlette:
    async def events(request: Request) -> SSEResponse | PlainTextResponse:
        user = request.headers.get("x-user")
        if user is None:
            return PlainTextResponse("log in first", status_code=401)
        channel = request.path_params["channel"]
        subscription = store.subscribe(channel, last_event_id=last_event_id(request), key=user)
        response = SSEResponse(subscription, **options)
        response.set_cookie("seen", "1")
        return response

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield

    return Starlette(
        routes=[Route("/events/{channel}", events)],
        middleware=[Middleware(GZipMiddleware, minimum_size=1)],
        lifespan=lifespan,
    )


async def test_response_ends_at_its_credential_expiry_through_gzip_middleware() -> None:
    async with ChannelStore() as store:
        expires = datetime.now(timezone.utc) + timedelta(seconds=0.3)
        app = make_app(store, heartbeat=None, expires=expires)
        headers = {"x-user": "al", "accept-encoding": "gzip"}
        async with connect_sse(app, "/events/news", headers=headers) as stream:
            await stream.wait_finished(timeout=3)
        assert stream.finished
        assert stream.body.endswith(format_sse(comment="expired", retry=EXPIRY_RETRY))
        assert stream.headers.get("set-cookie", "").startswith("seen=1")
        assert store.statistics().subscribers == 0


async def test_response_refuses_an_expired_credential_in_the_route() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        past = datetime.now(timezone.utc) - timedelta(seconds=1)
        with pytest.raises(CredentialExpiredError):
            SSEResponse(subscription, expires=past)
        assert subscription.closed


async def test_response_streams_through_gzip_middleware_uncompressed() -> None:
    async with ChannelStore() as store:
        app = make_app(store)
        headers = {"x-user": "al", "accept-encoding": "gzip"}
        async with connect_sse(app, "/events/news", headers=headers) as stream:
            await stream.wait_comments(1)  # the opening comment got through at once
            for name, value in SSE_HEADERS.items():
                assert stream.headers[name] == value
            assert "content-encoding" not in stream.headers
            assert stream.headers["set-cookie"].startswith("seen=1")
            await store.send("news", "x" * 500)
            assert [e.data for e in await stream.read_events(1)] == ["x" * 500]
        assert store.statistics().subscribers == 0


async def test_response_resumes_from_the_query_parameter() -> None:
    async with ChannelStore() as store:
        sent = [await store.send("news", str(n)) for n in range(3)]
        query = {"last_event_id": sent[0].id or ""}
        async with connect_sse(
            make_app(store), "/events/news", headers={"x-user": "al"}, query=query
        ) as stream:
            assert [e.data for e in await stream.read_events(2)] == ["1", "2"]


async def test_response_options_and_background_task() -> None:
    done = anyio.Event()
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        response = SSEResponse(
            subscription, heartbeat=0.05, retry=10, background=BackgroundTask(done.set)
        )
        async with connect_sse(response) as stream:
            await stream.wait_comments(2)
            assert stream.chunks[0] == b": ok\nretry: 10\n\n"
            store.revoke(channel="news")
            await stream.wait_finished()
        assert done.is_set()
        assert subscription.close_reason == "revoked"


async def test_response_never_sent_can_release_its_subscription() -> None:
    async with ChannelStore() as store:
        response = SSEResponse(store.subscribe("news"))
        response.close()
        assert store.statistics().subscribers == 0


@pytest.mark.parametrize("name", ["connection", "Transfer-Encoding", "keep-alive"])
async def test_response_refuses_a_stream_breaking_header_added_later(name: str) -> None:
    async with ChannelStore() as store:
        response = SSEResponse(store.subscribe("news"))
        response.headers[name] = "x"
        with pytest.raises(ValueError, match=name.lower()):
            async with connect_sse(response):
                pass
        assert store.statistics().subscribers == 0


async def test_response_header_named_like_an_sse_header_in_any_case_replaces_it() -> None:
    async with ChannelStore() as store:
        headers = {"Cache-Control": "no-cache", "Content-Type": "text/event-stream"}
        response = SSEResponse(store.subscribe("news"), headers=headers)
        names = [name for name, _ in response.raw_headers]
        assert len(names) == len(set(names)) == 3
        async with connect_sse(response) as stream:
            await stream.wait_comments(1)
            assert stream.headers["cache-control"] == "no-cache"
            assert stream.headers["content-type"] == "text/event-stream"


async def test_head_request_to_a_get_route_gets_headers_only_and_frees_the_subscription() -> None:
    """Starlette answers HEAD for a GET route: the response must end, not stream."""
    async with ChannelStore() as store:
        async with connect_sse(
            make_app(store), "/events/news", method="HEAD", headers={"x-user": "alice"}
        ) as stream:
            await stream.wait_finished(timeout=2)
            assert stream.status == 200
            assert stream.body == b""
        assert store.statistics().subscribers == 0


async def test_real_server_starlette_route_streams_and_releases_on_disconnect(
    anyio_backend: str,
) -> None:
    server_name, backend = server_for(anyio_backend)
    store = ChannelStore()
    with serve_in_thread(
        make_app(store, heartbeat=1), server=server_name, backend=backend
    ) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=5) as client,
            aconnect_sse(client, "GET", "/events/news", headers={"x-user": "alice"}) as source,
        ):
            assert source.response.headers["content-type"] == SSE_HEADERS["content-type"]
            with anyio.fail_after(2):
                while await server.acall(lambda: store.statistics().subscribers) != 1:
                    await anyio.sleep(0.01)
            for n in range(3):
                await server.arun(store.send, "news", f"hello {n}")
            received = [m.data for m in await read_sse_then_leave(source, 3)]
            assert received == ["hello 0", "hello 1", "hello 2"]
        began = time.monotonic()
        with anyio.fail_after(1):
            while await server.acall(lambda: store.statistics().subscribers):
                await anyio.sleep(0.005)
        assert time.monotonic() - began < 1.0


async def test_real_server_fastapi_route_streams(anyio_backend: str) -> None:
    fastapi = pytest.importorskip("fastapi")
    server_name, backend = server_for(anyio_backend)
    store = ChannelStore()
    api = fastapi.FastAPI()

    @api.get("/events", response_class=SSEResponse)  # type: ignore[untyped-decorator]
    async def events(request: Request) -> SSEResponse:
        return SSEResponse(store.subscribe("news", last_event_id=last_event_id(request)))

    with serve_in_thread(api, server=server_name, backend=backend) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=5) as client,
            aconnect_sse(client, "GET", "/events") as source,
        ):
            with anyio.fail_after(2):
                while await server.acall(lambda: store.statistics().subscribers) != 1:
                    await anyio.sleep(0.01)
            await server.arun(store.send, "news", {"ok": True})
            (message,) = await read_sse_then_leave(source, 1)
            assert message.json() == {"ok": True}
        with anyio.fail_after(1):
            while await server.acall(lambda: store.statistics().subscribers):
                await anyio.sleep(0.005)


async def test_response_gives_up_on_a_client_that_stopped_reading() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        response = SSEResponse(
            subscription, options=StreamOptions(heartbeat=None, send_timeout=0.2)
        )
        async with connect_sse(response) as stream:
            await stream.wait_comments(1)
            stream.stop_reading()
            await store.send("news", "never read")
            with anyio.fail_after(3):
                while not subscription.closed:
                    await anyio.sleep(0.01)
            await stream.wait_finished(timeout=1)
            assert not stream.finished  # abandoned, not ended
        assert store.statistics().subscribers == 0


async def test_response_sends_the_status_and_headers_set_after_it_was_made() -> None:
    async with ChannelStore() as store:
        response = SSEResponse(store.subscribe("news"))
        response.status_code = 202
        response.headers["x-late"] = "yes"
        async with connect_sse(response) as stream:
            await stream.wait_comments(1)
            assert stream.status == 202
            assert stream.headers["x-late"] == "yes"
