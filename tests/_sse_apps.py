"""ASGI apps for the client tests: a store behind SSEApp, and scripted responses.

``Watched`` wraps any ASGI app and records, per HTTP request, when it came, its headers and
its query string, and how many requests are open right now (counted down in ``finally``,
so a connection the client leaked stays counted). ``Scripted`` answers each request with
the next of a list of responders (the last one repeats).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sse_channels._types import ASGIApp, Receive, Scope, Send

    Responder = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Request:
    """One HTTP request as the server saw it."""

    at: float
    path: str
    headers: dict[str, str]
    query: dict[str, str]


@dataclass
class Watched:
    """Records every HTTP request to ``app`` and counts the open ones."""

    app: ASGIApp
    requests: list[Request] = field(default_factory=list)
    open: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            # Repeated headers joined, so that a header sent twice shows.
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        self.requests.append(Request(time.monotonic(), scope["path"], headers, query))
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1

    def last_event_ids(self) -> list[str | None]:
        return [request.headers.get("last-event-id") for request in self.requests]


@dataclass
class Scripted:
    """Answers the n-th request with ``responders[n]`` (the last one for every later one)."""

    responders: list[Responder]
    served: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        responder = self.responders[min(self.served, len(self.responders) - 1)]
        self.served += 1
        await responder(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


def status(code: int, headers: dict[str, str] | None = None) -> Responder:
    """A responder that answers ``code`` with an empty body."""

    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        raw.append((b"content-length", b"0"))
        await send({"type": "http.response.start", "status": code, "headers": raw})
        await send({"type": "http.response.body", "body": b""})

    return respond


def stream(
    *chunks: bytes, hold: float = 0.0, content_type: bytes = b"text/event-stream"
) -> Responder:
    """A responder that streams ``chunks`` (one write each), then ends ``hold`` s later."""

    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", content_type), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if hold:
            with anyio.move_on_after(hold):
                while (await receive())["type"] != "http.disconnect":
                    pass
                return  # the client left first
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return respond


def endless(*chunks: bytes) -> Responder:
    """A responder that streams ``chunks`` and then stays open until the client leaves."""

    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass

    return respond


def route(routes: dict[str, Any]) -> ASGIApp:
    """Dispatch on the request path; lifespan goes to every app that is not a responder."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await routes[scope["path"]](scope, receive, send)

    return app
