"""The browser module ``sse-channels.js``, shipped in the package, and an app that serves it.

``sse-channels.js`` is a plain ES module (no build step, no dependency) that wraps the
browser's own ``EventSource`` in stores with the Svelte store contract; see
[docs/clients.md](https://github.com/sse-channels/sse-channels/blob/main/docs/clients.md).
Serve it from your app in one line, e.g. with Starlette::

    Route("/sse-channels.js", sse_channels.browser.module_app())

or copy [MODULE_PATH][sse_channels.browser.MODULE_PATH] into your static files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from .._types import Receive, Scope, Send

__all__ = ["CONTENT_TYPE", "MODULE_PATH", "ModuleApp", "module_app", "module_bytes"]

#: Where the module is on disk (inside the installed package).
MODULE_PATH: Path = Path(__file__).with_name("sse-channels.js")

#: The content type a browser needs to run an ES module.
CONTENT_TYPE = "text/javascript; charset=utf-8"


def module_bytes() -> bytes:
    """The module's source, as served."""
    return MODULE_PATH.read_bytes()


@final
class ModuleApp:
    """An ASGI app that answers ``GET`` and ``HEAD`` with the module, at whatever path.

    It sends ``Content-Type: text/javascript``, ``X-Content-Type-Options: nosniff``, an
    ``ETag`` (answering ``If-None-Match`` with 304) and ``Cache-Control``: ``no-cache``
    by default (the browser revalidates, cheaply, so an upgrade is seen at once), or
    ``public, max-age=N`` when ``max_age`` is set (for a URL that changes with the
    version). Other methods get 405; a lifespan scope is answered and ignored.
    """

    __slots__ = ("body", "etag", "headers")

    def __init__(self, *, max_age: int | None = None) -> None:
        if max_age is not None and (
            isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0
        ):
            raise ValueError(f"max_age must be a non-negative int or None, not {max_age!r}")
        self.body = module_bytes()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'
        cache = "no-cache" if max_age is None else f"public, max-age={max_age}"
        self.headers = [
            (b"content-type", CONTENT_TYPE.encode()),
            (b"cache-control", cache.encode()),
            (b"etag", self.etag.encode()),
            (b"x-content-type-options", b"nosniff"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise ValueError(f"the module is served over HTTP, not {scope['type']!r}")
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _reply(send, 405, [(b"allow", b"GET, HEAD"), (b"content-length", b"0")], b"")
            return
        if _matches(scope, self.etag):
            await _reply(send, 304, self.headers[1:3], b"")
            return
        length = (b"content-length", str(len(self.body)).encode())
        body = b"" if method == "HEAD" else self.body
        await _reply(send, 200, [*self.headers, length], body)


def module_app(*, max_age: int | None = None) -> ModuleApp:
    """An ASGI app serving ``sse-channels.js``; mount it at the URL your pages import.

    Args:
        max_age: seconds browsers may cache it without asking; ``None`` (the default):
            revalidate each time (``no-cache`` with an ``ETag``).

    Raises:
        ValueError: ``max_age`` is not a non-negative ``int``.
    """
    return ModuleApp(max_age=max_age)


def _matches(scope: Scope, etag: str) -> bool:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"if-none-match":
            tags = [tag.strip() for tag in value.decode("latin-1").split(",")]
            return etag in tags or "*" in tags or f"W/{etag}" in tags
    return False


async def _reply(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
