"""Presence across uvicorn server processes: one view, kills, shutdowns, resume.

Each server is ``_presence_app.make_app``: a store and a presence on one Redis
(``RedisBackend``, ``RedisPresence``) or one PostgreSQL database (``PostgresBackend``,
``PostgresPresence``), run by ``SSEApp``'s lifespan; every test runs on both. The test
process reads the streams as a browser would and kills servers with SIGKILL or stops them
with SIGTERM.
"""

from __future__ import annotations

import json
import signal
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

from _postgres import postgres_dsn, postgres_server, unique_schema
from _presence_app import PREFIX_ENV, TTL_ENV, URL_ENV
from _redis import RedisServer, redis_server, unique_prefix
from _servers import RawHTTPStream, ServerProcess, open_stream, serve_in_subprocess
from sse_channels import PresenceView

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

__all__ = ["postgres_dsn", "postgres_server", "redis_server"]  # fixtures, re-exported

pytestmark = pytest.mark.anyio

TTL = 2.0
#: RedisPresence's bound: ttl plus one heartbeat interval (ttl / 3).
BOUND = TTL + TTL / 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Shared:
    """Where the server processes of one test meet: a URL and a prefix (or schema)."""

    url: str
    prefix: str


@pytest.fixture(params=["redis", "postgres"])
def shared(request: pytest.FixtureRequest) -> Iterator[Shared]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = unique_prefix()
        yield Shared(server.url, prefix)
        with server.client() as admin:
            keys = list(admin.scan_iter(match=f"{prefix}*"))
            if keys:
                admin.delete(*keys)
    else:
        yield Shared(request.getfixturevalue("postgres_dsn"), unique_schema())


def start(stack: ExitStack, shared: Shared, ttl: float) -> ServerProcess:
    env = {URL_ENV: shared.url, PREFIX_ENV: shared.prefix, TTL_ENV: str(ttl)}
    return stack.enter_context(
        serve_in_subprocess("_presence_app:make_app", args=("--factory",), env=env)
    )


@asynccontextmanager
async def stream(
    server: ServerProcess, channel: str, user: str | None = None, last_event_id: str | None = None
) -> AsyncIterator[RawHTTPStream]:
    path = f"/events?channel={channel}" + (f"&user={user}" if user else "")
    headers = {"last-event-id": last_event_id} if last_event_id else {}
    client = await open_stream(server.host, server.port, path, headers=headers)
    try:
        assert client.status == 200
        yield client
    finally:
        await client.aclose()


async def follow(
    feed: RawHTTPStream,
    view: PresenceView,
    done: Callable[[PresenceView], bool],
    timeout: float = 10.0,
    seen: list[Any] | None = None,
) -> float:
    """Apply the feed's events to ``view`` (one at least) until ``done``; the seconds it took."""
    began = anyio.current_time()
    with anyio.fail_after(timeout):
        while True:
            (event,) = await feed.read_events(1, timeout=timeout)
            if seen is not None:
                seen.append(event)
            view.apply(event.event, event.data)
            if done(view):
                break
    return anyio.current_time() - began


def change_kinds(events: list[Any]) -> list[str]:
    """The kinds of the events, each ``diff`` (several changes at once) spelt out."""
    kinds: list[str] = []
    for event in events:
        if event.event == "diff":
            body = json.loads(event.data)
            kinds += ["join"] * len(body["joins"]) + ["leave"] * len(body["leaves"])
        else:
            kinds.append(event.event)
    return kinds


async def members(http: httpx.AsyncClient, server: ServerProcess) -> dict[str, Any]:
    response = await http.get(f"{server.url}/members?channel=room")
    response.raise_for_status()
    found: dict[str, Any] = response.json()["members"]
    return found


async def test_two_processes_share_one_view_and_tabs_count_once(
    shared: Shared,
) -> None:
    with ExitStack() as stack:
        a, b = (start(stack, shared, TTL) for _ in range(2))
        seen: list[Any] = []
        async with (
            httpx.AsyncClient(timeout=5) as http,
            stream(b, "presence:room") as watcher,
        ):
            view = PresenceView()
            await follow(watcher, view, lambda v: True, seen=seen)  # the snapshot
            async with stream(a, "room", "alice"), stream(b, "room", "bob"):
                async with stream(a, "room", "alice"), stream(b, "room", "alice"):
                    await follow(
                        watcher, view, lambda v: set(v.members) == {"alice", "bob"}, seen=seen
                    )
                    for server in (a, b):  # every connection, once its join is registered
                        with anyio.fail_after(5):
                            while {m: len(c) for m, c in (await members(http, server)).items()} != {
                                "alice": 3,
                                "bob": 1,
                            }:
                                await anyio.sleep(0.02)
                await anyio.sleep(0.5)  # two of alice's three tabs closed: she stays
                assert set(view.members) == {"alice", "bob"}
                assert set(await members(http, a)) == {"alice", "bob"}
            await follow(watcher, view, lambda v: not v.members, seen=seen)
            with anyio.fail_after(5):
                while await members(http, a) != {} or await members(http, b) != {}:
                    await anyio.sleep(0.02)
        kinds = change_kinds(seen)
        assert kinds[0] == "snapshot"
        assert kinds.count("join") == 2  # alice once, bob once
        assert kinds.count("leave") == 2


async def test_sigkill_of_one_process_its_members_leave_in_the_other_within_the_bound(
    shared: Shared,
) -> None:
    with ExitStack() as stack:
        a, b = (start(stack, shared, TTL) for _ in range(2))
        async with httpx.AsyncClient(timeout=5) as http, stream(b, "presence:room") as watcher:
            view = PresenceView()
            await follow(watcher, view, lambda v: True)
            doomed = [
                await open_stream(a.host, a.port, f"/events?channel=room&user=u{n}")
                for n in range(5)
            ]
            async with stream(b, "room", "bob"):
                await follow(watcher, view, lambda v: len(v.members) == 6)
                a.send_signal(signal.SIGKILL)
                a.wait()
                took = await follow(watcher, view, lambda v: set(v.members) == {"bob"})
                assert took <= BOUND + 1.0, took
                assert set(await members(http, b)) == {"bob"}
            for client in doomed:
                await client.aclose()


async def test_sigterm_shutdown_announces_the_leaves_at_once(
    shared: Shared,
) -> None:
    # With a long ttl, only a clean leave (not the expiry) can be this quick.
    with ExitStack() as stack:
        a, b = (start(stack, shared, 60.0) for _ in range(2))
        async with stream(b, "presence:room") as watcher:
            view = PresenceView()
            await follow(watcher, view, lambda v: True)
            client = await open_stream(a.host, a.port, "/events?channel=room&user=alice")
            await follow(watcher, view, lambda v: "alice" in v.members)
            a.send_signal(signal.SIGTERM)
            took = await follow(watcher, view, lambda v: not v.members, timeout=10)
            assert took < 5, took
            assert await client.read_to_end(timeout=5) is not None  # ended cleanly
            await client.aclose()
            a.wait()


async def test_client_resuming_on_the_other_process_rebuilds_the_exact_list(
    shared: Shared,
) -> None:
    with ExitStack() as stack:
        a, b = (start(stack, shared, TTL) for _ in range(2))
        async with httpx.AsyncClient(timeout=5) as http, stream(a, "room", "alice"):
            view = PresenceView()
            seen: list[Any] = []
            async with stream(b, "presence:room") as watcher:
                await follow(watcher, view, lambda v: "alice" in v.members, seen=seen)
            last_id = seen[-1].id
            # Away: bob and carol join, alice's other tab comes and goes, carol leaves.
            async with stream(b, "room", "bob"):
                async with stream(a, "room", "carol"), stream(a, "room", "alice"):
                    await anyio.sleep(0.3)
                await anyio.sleep(0.3)
                resumed: list[Any] = []
                async with stream(a, "presence:room", last_event_id=last_id) as watcher:
                    await follow(
                        watcher, view, lambda v: set(v.members) == {"alice", "bob"}, seen=resumed
                    )
                    assert "snapshot" not in [e.event for e in resumed]  # history covered it
                assert set(view.members) == set(await members(http, a))
