"""sse_channels.testing.collect_sse: the reconnecting client as a test helper."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from _servers import serve_in_thread
from _sse_apps import Scripted, Watched, endless, stream
from sse_channels import Event
from sse_channels.client import Backoff, Gap
from sse_channels.testing import CollectTimeoutError, collect_sse

if TYPE_CHECKING:
    from collections.abc import Iterator

QUICK = Backoff(initial=0.001, maximum=0.02)


@pytest.fixture
def two_connections() -> Iterator[tuple[str, Watched]]:
    gap = b'event: gap\nid: 3\ndata: {"reason":"expired","channel":"news"}\n\n'
    app = Watched(
        Scripted(
            [
                stream(b"id: 1\ndata: one\n\nid: 2\ndata: two\n\n"),
                endless(gap + b"id: 4\ndata: four\n\n"),
            ]
        )
    )
    with serve_in_thread(app) as server:
        yield server.url + "/", app


@pytest.mark.anyio
async def test_collect_sse_reads_across_a_reconnect_and_hangs_up(
    two_connections: tuple[str, Watched],
) -> None:
    url, app = two_connections
    items = await collect_sse(url, 4, backoff=QUICK)
    assert [type(item) for item in items] == [Event, Event, Gap, Event]
    assert [item.id for item in items] == ["1", "2", "3", "4"]
    assert app.last_event_ids() == [None, "2"]
    with anyio.fail_after(5):
        while app.open:
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_collect_sse_times_out_with_what_did_arrive(
    two_connections: tuple[str, Watched],
) -> None:
    url, app = two_connections
    with pytest.raises(CollectTimeoutError) as raised:
        await collect_sse(url, 10, timeout=0.5, backoff=QUICK)
    assert [event.data for event in raised.value.events] == [
        "one",
        "two",
        '{"reason":"expired","channel":"news"}',
        "four",
    ]
    with anyio.fail_after(5):
        while app.open:
            await anyio.sleep(0.01)


@pytest.mark.anyio
@pytest.mark.parametrize(("n", "error"), [(0, ValueError), (-1, ValueError), (2.0, TypeError)])
async def test_collect_sse_rejects_a_bad_count(n: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        await collect_sse("http://127.0.0.1:9/", n)  # type: ignore[arg-type]
