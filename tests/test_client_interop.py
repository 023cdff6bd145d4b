"""The client is not tied to this library's server: sse-starlette, and a hand-written ASGI app.

Both servers end the response every few events and resume from the ``Last-Event-ID``
header in their own way; the client must yield each event once, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.routing import Route

from _servers import serve_in_thread
from _sse_apps import Watched
from sse_channels import Event
from sse_channels.client import Backoff, EventSource, Gap, SyncEventSource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from starlette.requests import Request

    from sse_channels._types import Receive, Scope, Send

QUICK = Backoff(initial=0.001, maximum=0.02)
TOTAL = 40
PER_CONNECTION = 7


def resume_point(headers: dict[str, str]) -> int:
    """The next number to send, from a ``Last-Event-ID`` of the form ``n<number>``."""
    last = headers.get("last-event-id")
    return 0 if last is None else int(last.removeprefix("n")) + 1


async def starlette_events(request: Request) -> EventSourceResponse:
    first = resume_point(dict(request.headers))

    async def events() -> AsyncIterator[ServerSentEvent]:
        end = min(first + PER_CONNECTION, TOTAL)
        for n in range(first, end):
            yield ServerSentEvent(data=f"event {n}", id=f"n{n}", event="count", retry=10)
        if end == TOTAL:
            await anyio.sleep_forever()  # all sent: stay open, as a live stream would

    return EventSourceResponse(events(), ping=60)


@pytest.fixture
def sse_starlette_url() -> Iterator[tuple[str, Watched]]:
    app = Watched(Starlette(routes=[Route("/events", starlette_events)]))
    with serve_in_thread(app) as server:
        yield server.url + "/events", app


async def hand_written(scope: Scope, receive: Receive, send: Send) -> None:
    """A plain ASGI event stream, written the way the standard allows but few servers do:
    a BOM, CRLF and lone CR line ends, comments, a multi-line event, ids that persist."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    first = resume_point(headers)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream;charset=UTF-8")],
        }
    )
    body = b"\xef\xbb\xbf:hello\r\nretry:5\r\n\r\n"
    end = min(first + PER_CONNECTION, TOTAL)
    for n in range(first, end):
        body += b"id:n%d\rdata:line one of %d\r\ndata: line two\n\n" % (n, n)
    # One write cut in the middle of a block, as a proxy may deliver it.
    half = len(body) // 2
    await send({"type": "http.response.body", "body": body[:half], "more_body": True})
    await send({"type": "http.response.body", "body": body[half:], "more_body": True})
    if end < TOTAL:
        await send({"type": "http.response.body", "body": b"data: cut off", "more_body": False})
        return
    while (await receive())["type"] != "http.disconnect":
        pass


@pytest.fixture
def hand_written_url() -> Iterator[tuple[str, Watched]]:
    app = Watched(hand_written)
    with serve_in_thread(app) as server:
        yield server.url + "/", app


def expected_ids() -> list[str]:
    return [f"n{n}" for n in range(TOTAL)]


@pytest.mark.anyio
async def test_client_reads_sse_starlette_across_reconnects_once_in_order(
    sse_starlette_url: tuple[str, Watched],
) -> None:
    url, app = sse_starlette_url
    received: list[Event | Gap] = []
    async with EventSource(url, backoff=QUICK) as source:
        async for item in source:
            received.append(item)
            if len(received) == TOTAL:
                break
        assert source.retry == 10
    assert all(isinstance(item, Event) and item.event == "count" for item in received)
    assert [item.id for item in received] == expected_ids()
    assert [item.data for item in received if isinstance(item, Event)] == [
        f"event {n}" for n in range(TOTAL)
    ]
    assert len(app.requests) == -(-TOTAL // PER_CONNECTION)


def test_sync_client_reads_sse_starlette_across_reconnects_once_in_order(
    sse_starlette_url: tuple[str, Watched],
) -> None:
    url, _ = sse_starlette_url
    with SyncEventSource(url, backoff=QUICK) as source:
        received = [next(source) for _ in range(TOTAL)]
    assert [item.id for item in received] == expected_ids()


@pytest.mark.anyio
async def test_client_reads_a_hand_written_asgi_stream_across_reconnects_once_in_order(
    hand_written_url: tuple[str, Watched],
) -> None:
    url, app = hand_written_url
    received: list[Event | Gap] = []
    async with EventSource(url, backoff=QUICK) as source:
        async for item in source:
            received.append(item)
            if len(received) == TOTAL:
                break
        assert source.retry == 5
    assert [item.id for item in received] == expected_ids()
    assert [item.data for item in received if isinstance(item, Event)] == [
        f"line one of {n}\nline two" for n in range(TOTAL)
    ]
    # The unterminated "cut off" block at each end was never dispatched.
    assert not any("cut off" in item.data for item in received if isinstance(item, Event))
    assert app.last_event_ids()[1:] == [
        f"n{n - 1}" for n in range(PER_CONNECTION, TOTAL, PER_CONNECTION)
    ]
