"""On asyncio a served stream supervises its writer and watchdog itself: cancellation is exact.

The engine cancels the writer (the caller's task) when the client leaves or a write takes
too long, and swallows that cancellation; one from outside must still go through, and the
task must be left as it was found (``cancelling() == 0`` on Python 3.11+).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import pytest

from _asgi_helpers import OPENING, stream_app, until
from sse_channels import ChannelStore

if TYPE_CHECKING:
    from sse_channels._types import Message

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # what is tested here exists on asyncio only


class Client:
    """Hand-written ``receive``/``send``: the client leaves when ``leave`` is set."""

    def __init__(self) -> None:
        self.leave = asyncio.Event()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent)


SCOPE: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}


async def test_a_cancellation_from_outside_goes_through_and_releases_everything() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        client = Client()
        before = len(asyncio.all_tasks())
        task = asyncio.ensure_future(stream_app(subscription)(SCOPE, client.receive, client.send))
        await until(lambda: client.body == OPENING)
        assert len(asyncio.all_tasks()) == before + 2  # the writer and its watchdog
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert subscription.closed
        assert len(asyncio.all_tasks()) == before  # the watchdog was awaited, not left


async def test_the_streams_own_cancellation_leaves_the_task_as_it_found_it() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        client = Client()
        cancelling: list[int] = []
        others: list[set[asyncio.Task[Any]]] = []
        before = asyncio.all_tasks()

        async def serve() -> None:
            await stream_app(subscription)(SCOPE, client.receive, client.send)
            current = asyncio.current_task()
            assert current is not None
            # At once, before anything else runs: the watchdog has finished, not only
            # been told to.
            others.append({t for t in asyncio.all_tasks() if not t.done()} - before - {current})
            cancelling.append(getattr(current, "cancelling", lambda: 0)())  # Python 3.11+
            await asyncio.sleep(0)  # a pending cancellation would be raised here

        task = asyncio.ensure_future(serve())
        await until(lambda: client.body == OPENING)
        client.leave.set()  # the watchdog sees http.disconnect and cancels the writer
        await asyncio.wait_for(task, 2)
        assert not task.cancelled()
        assert cancelling == [0]
        assert others == [set()]
        assert subscription.close_reason == "closed"
        assert client.sent[-1].get("more_body", True)  # no end of response: the client left


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.uncancel() is Python 3.11+")
async def test_a_cancellation_from_outside_at_the_same_time_as_its_own_goes_through() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        client = Client()
        task = asyncio.ensure_future(stream_app(subscription)(SCOPE, client.receive, client.send))
        await until(lambda: client.body == OPENING)
        client.leave.set()  # the watchdog runs first and cancels the writer...
        task.cancel()  # ...which someone else cancels too
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert subscription.closed


async def test_a_heartbeat_stuck_in_send_is_given_up_at_the_write_deadline() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news")
        client = Client()

        async def send(message: Message) -> None:
            if message.get("body") == b": ping\n\n":
                await asyncio.Event().wait()  # never returns: the client stopped reading
            await client.send(message)

        app = stream_app(subscription, heartbeat=0.05, send_timeout=0.2)
        task = asyncio.ensure_future(app(SCOPE, client.receive, send))
        await asyncio.wait_for(task, 2)
        assert not task.cancelled()
        assert subscription.closed
        assert client.body == OPENING  # the heartbeat never got out


async def test_a_stream_that_ends_has_awaited_its_watchdog_before_it_returns() -> None:
    async with ChannelStore() as store:
        subscription = store.subscribe("news", key="alice")
        client = Client()
        others: list[set[asyncio.Task[Any]]] = []
        before = asyncio.all_tasks()

        async def serve() -> None:
            await stream_app(subscription)(SCOPE, client.receive, client.send)
            current = asyncio.current_task()
            # At once, before anything else runs: finished, not only told to.
            others.append({t for t in asyncio.all_tasks() if not t.done()} - before - {current})

        task = asyncio.ensure_future(serve())
        await until(lambda: client.body == OPENING)
        store.revoke(key="alice")  # the writer ends; the watchdog is still listening
        await asyncio.wait_for(task, 2)
        assert others == [set()]
        assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
