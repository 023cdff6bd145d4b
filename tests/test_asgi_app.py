"""SSEApp driven in process: resolving, authorising, resuming, lifespan."""

from __future__ import annotations

from typing import Any

import pytest

from _asgi_helpers import live, make_app
from sse_channels import ChannelStore
from sse_channels.asgi import SSE_HEADERS, SSEApp
from sse_channels.testing import connect_sse

pytestmark = pytest.mark.anyio


# -- SSEApp -------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_app_allows_only_get_and_head(method: str) -> None:
    async with (
        ChannelStore() as store,
        connect_sse(SSEApp(store, "news"), method=method) as stream,
    ):
        await stream.wait_finished()
        assert stream.status == 405
        assert stream.headers["allow"] == "GET, HEAD"


async def test_app_head_gets_the_stream_headers_and_subscribes_nothing() -> None:
    async with ChannelStore() as store:
        app = SSEApp(store, "news", headers={"x-custom": "1"})
        async with connect_sse(app, method="HEAD") as stream:
            await stream.wait_finished(timeout=2)
            assert stream.finished
            assert stream.status == 200
            assert stream.headers == {**SSE_HEADERS, "x-custom": "1"}
            assert stream.body == b""
        assert store.statistics().subscribers == 0
        assert store.statistics().channels == 0  # not even touched


@pytest.mark.parametrize(
    ("user", "status"), [("mallory", 403), (None, 401), ("gone", 204), ("al", 200)]
)
async def test_app_head_is_authorised_like_get(user: str | None, status: int) -> None:
    async with ChannelStore() as store:
        headers = {"x-user": user} if user else {}
        query = {"channel": "news,secret"}
        app = make_app(store)
        async with connect_sse(app, "/", method="HEAD", query=query, headers=headers) as s:
            await s.wait_finished(timeout=2)
            assert s.status == status
        assert store.statistics().subscribers == 0


@pytest.mark.parametrize("name", ["*", "news*", "private:*"])
async def test_app_refuses_a_pattern_from_a_callable_resolver(name: str) -> None:
    async with ChannelStore() as store:
        app = SSEApp(store, lambda scope: [name])
        async with connect_sse(app) as stream:
            await stream.wait_finished(timeout=2)
            assert stream.status == 400
            assert stream.headers["content-type"].startswith("text/plain")
            assert stream.comments == []
        assert store.statistics().subscribers == 0


async def test_app_resolver_patterns_work_with_the_opt_in() -> None:
    async with ChannelStore() as store:
        app = SSEApp(store, lambda scope: "news*", patterns=True)
        async with connect_sse(app) as stream:
            await store.send("news:eu", "x")
            assert [e.data for e in await stream.read_events(1)] == ["x"]


async def test_app_fixed_patterns_need_no_opt_in() -> None:
    async with ChannelStore() as store, connect_sse(SSEApp(store, ["news*"])) as stream:
        await store.send("news:eu", "x")
        assert [e.data for e in await stream.read_events(1)] == ["x"]


def test_app_patterns_flag_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="patterns"):
        SSEApp(ChannelStore(), lambda scope: "news", patterns="yes")  # type: ignore[arg-type]


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
