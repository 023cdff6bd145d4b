"""What the sse_channels.asgi tests share: polling, app builders, the real-server fixture."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import anyio

from sse_channels.asgi import EventStreamResponse, SSEApp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sse_channels import ChannelStore, Subscription

OPENING = b": ok\n\n"


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> float:
    """Poll ``predicate`` until true; return the seconds it took (TimeoutError after timeout)."""
    began = time.monotonic()
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)
    return time.monotonic() - began


def stream_app(
    subscription: Subscription, **options: Any
) -> Callable[[Any, Any, Any], Awaitable[None]]:
    return EventStreamResponse(subscription, **options)


def live(store: ChannelStore) -> int:
    return store.statistics().subscribers


class FakeSubscription:
    """Enough of a subscription for code that only closes it."""

    closed = False

    def close(self) -> None:
        self.closed = True


def query_channel(scope: Any) -> list[str]:
    query = parse_qs(scope["query_string"].decode("latin-1"))
    return query["channel"][0].split(",") if "channel" in query else []


def user_of(scope: Any) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-user":
            return str(value.decode())
    return None


def make_app(store: ChannelStore, **options: Any) -> SSEApp:
    """Channels from ``?channel=a,b``; the user from ``x-user``; mallory may not read."""

    async def authorize(scope: Any, channels: list[str]) -> bool | int:
        user = user_of(scope)
        if user is None:
            return 401
        if user == "gone":
            return 204
        return not (user == "mallory" and "secret" in channels)

    options.setdefault("heartbeat", 0.2)
    return SSEApp(store, query_channel, authorize=authorize, key=user_of, **options)


async def wait_live(server: Any, store: ChannelStore, count: int, timeout: float) -> float:
    began = time.monotonic()
    with anyio.fail_after(timeout):
        while await server.acall(live, store) != count:
            await anyio.sleep(0.005)
    return time.monotonic() - began
