"""The demo as a plain ASGI app: friends, a cookie session, one EventSource per tab."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from contextlib import AsyncExitStack
from importlib.resources import files
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, final
from urllib.parse import parse_qs

from .._presence import PRESENCE_PREFIX, Presence, PresenceBackend
from .._store import ChannelStore
from ..asgi import SSEApp, close_on_signal
from ..browser import module_app

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .._types import Receive, Scope, Send

__all__ = ["BROADCAST", "FRIENDS", "ONLINE", "DemoApp", "user_channel"]

#: The demo's users and their friends (friendship goes both ways).
FRIENDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "alice": ("bob", "carol"),
        "bob": ("alice", "dave"),
        "carol": ("alice", "dave"),
        "dave": ("bob", "carol"),
    }
)

#: The channel every logged-in user reads.
BROADCAST = "broadcast"
#: Who is online now: the presence of the broadcast channel (every stream joins it).
ONLINE = PRESENCE_PREFIX + BROADCAST

_MAX_BODY = 4096
_MAX_TEXT = 280

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

_COMMON_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
]


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def user_channel(user: str) -> str:
    """The private channel of one user: only that user's session may read it."""
    return f"user:{user}"


@final
class DemoApp:
    """The demo's ASGI app (HTTP and lifespan).

    Routes: ``GET /`` (the page, with ``/app.js``, ``/style.css`` and the browser module
    ``/sse-channels.js``, served by [module_app][sse_channels.browser.module_app]),
    ``GET /session``, ``POST /login`` (form field ``user``), ``POST /logout``,
    ``POST /broadcast`` (form field ``text``) and ``GET /events``, the event stream of the
    logged-in user's own channel ``user:<name>``, ``broadcast`` and ``presence:broadcast``
    ("online now": a snapshot, then joins and leaves). Each stream joins the presence of
    its channels as its user (``presence=``): a user with several tabs counts once, and
    leaves when the last tab closes. The channel list comes from the server-side session
    only, never from the request, so nobody can read another user's channel.

    Args:
        store: the store to use; default a new in-memory one. The app closes it on
            lifespan shutdown.
        cookie_name: the session cookie's name (cookies ignore ports, so two demos on one
            host need different names).
        retry: the reconnection delay, in milliseconds, sent to browsers.
        heartbeat: seconds between keep-alive comments on a quiet stream.
        presence: where "online now" is kept; default in this process's memory
            (``RedisPresence`` shares it between demo processes).
    """

    def __init__(
        self,
        store: ChannelStore | None = None,
        *,
        cookie_name: str = "sse_demo_session",
        retry: int = 1000,
        heartbeat: float = 15.0,
        presence: PresenceBackend | None = None,
    ) -> None:
        self.store = store if store is not None else ChannelStore()
        #: Who is online: every stream joins it as its user.
        self.presence = Presence(self.store, presence)
        self.cookie_name = cookie_name
        self._sessions: dict[str, str] = {}
        self._online: Counter[str] = Counter()
        self._exit = AsyncExitStack()
        self._static = {
            path: ((files(__package__) / "static" / name).read_bytes(), kind.encode())
            for path, (name, kind) in _STATIC.items()
        }
        self._module = module_app()
        self._events = SSEApp(
            self.store,
            channels=self._channels,
            authorize=self._authorize,
            key=self.user,
            heartbeat=heartbeat,
            retry=retry,
            presence=self.presence,
        )

    # -- sessions ----------------------------------------------------------------------

    def user(self, scope: Scope) -> str | None:
        """The user logged in by the request's session cookie, or ``None``."""
        session = _cookies(scope).get(self.cookie_name)
        return None if session is None else self._sessions.get(session)

    def _channels(self, scope: Scope) -> list[str]:
        user = self.user(scope)
        return [] if user is None else [user_channel(user), BROADCAST, ONLINE]

    def _authorize(self, scope: Scope, channels: Sequence[str]) -> bool:
        # Belt and braces: the channels already come from the session.
        user = self.user(scope)
        return user is not None and set(channels) <= {user_channel(user), BROADCAST, ONLINE}

    async def _announce(self, user: str, online: bool) -> None:
        text = f"{user} is {'online' if online else 'offline'}"
        for friend in FRIENDS[user]:
            data = {"user": user, "online": online, "text": text}
            await self.store.send(user_channel(friend), data, event="presence")

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"the demo serves HTTP only, not {scope['type']!r}")
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path in self._static:
                _allow(method, "GET", "HEAD")
                body, kind = self._static[path]
                headers = [(b"content-type", kind)]
                if path == "/":
                    headers += _PAGE_HEADERS
                await _respond(send, 200, b"" if method == "HEAD" else body, headers)
            elif path == "/sse-channels.js":
                await self._module(scope, receive, send)
            elif path == "/events":
                _allow(method, "GET")
                if self.user(scope) is None:
                    raise _HTTPError(401, "log in first")
                await self._events(scope, receive, send)
            elif path == "/session":
                _allow(method, "GET")
                await _json(send, 200, self._describe(self.user(scope)))
            elif path in ("/login", "/logout", "/broadcast"):
                _allow(method, "POST")
                _check_origin(scope)
                form = await _read_form(receive)
                if path == "/login":
                    await self._login(scope, send, form)
                elif path == "/logout":
                    await self._logout(scope, send)
                else:
                    await self._broadcast(scope, send, form)
            else:
                raise _HTTPError(404, "not found")
        except _HTTPError as error:
            headers = [(b"allow", b"GET, HEAD, POST")] if error.status == 405 else []
            await _json(send, error.status, {"error": error.message}, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._exit.enter_async_context(self.store)
                    await self._exit.enter_async_context(self.presence)
                    # On Ctrl+C the server waits for open responses before the lifespan
                    # shutdown; closing the store at the signal ends every stream at once
                    # (the presence first, so that the leaves are sent).
                    await self._exit.enter_async_context(
                        close_on_signal(self.store, first=[self.presence])
                    )
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._exit.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routes ------------------------------------------------------------------------

    def _describe(self, user: str | None) -> dict[str, Any]:
        return {
            "user": user,
            "friends": list(FRIENDS[user]) if user is not None else [],
            "users": {name: list(friends) for name, friends in FRIENDS.items()},
        }

    async def _login(self, scope: Scope, send: Send, form: dict[str, str]) -> None:
        user = form.get("user", "")
        if user not in FRIENDS:
            raise _HTTPError(400, f"no such user: {user!r}")
        await self._end_session(scope)
        session = secrets.token_urlsafe(32)
        self._sessions[session] = user
        self._online[user] += 1
        if self._online[user] == 1:
            await self._announce(user, online=True)
        cookie = f"{self.cookie_name}={session}; Path=/; HttpOnly; SameSite=Lax"
        await _json(send, 200, self._describe(user), [(b"set-cookie", cookie.encode())])

    async def _logout(self, scope: Scope, send: Send) -> None:
        await self._end_session(scope)
        cookie = f"{self.cookie_name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        await _json(send, 200, self._describe(None), [(b"set-cookie", cookie.encode())])

    async def _end_session(self, scope: Scope) -> None:
        session = _cookies(scope).get(self.cookie_name)
        user = None if session is None else self._sessions.pop(session, None)
        if user is None:
            return
        # Ends this user's open streams: this session's stop at the 401 on reconnect,
        # the user's other sessions reconnect and resume from their Last-Event-ID.
        self.store.revoke(key=user)
        self._online[user] -= 1
        if self._online[user] == 0:
            del self._online[user]
            await self._announce(user, online=False)

    async def _broadcast(self, scope: Scope, send: Send, form: dict[str, str]) -> None:
        user = self.user(scope)
        if user is None:
            raise _HTTPError(401, "log in first")
        text = form.get("text", "")
        if not text.strip():
            raise _HTTPError(400, "say something")
        if len(text) > _MAX_TEXT:
            raise _HTTPError(400, f"at most {_MAX_TEXT} characters")
        event = await self.store.send(
            BROADCAST, {"user": user, "text": f"{user}: {text}"}, event="broadcast"
        )
        await _json(send, 200, {"id": event.id})


# -- HTTP helpers ----------------------------------------------------------------------


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _HTTPError(405, f"use {' or '.join(allowed)}")


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _cookies(scope: Scope) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                key, sep, val = pair.strip().partition("=")
                if sep:
                    cookies.setdefault(key, val)
    return cookies


def _check_origin(scope: Scope) -> None:
    """Refuse form posts from other origins (SameSite=Lax still sends cookies across ports)."""
    headers = _headers(scope)
    origin = headers.get("origin")
    if origin is not None and origin != f"{scope.get('scheme', 'http')}://{headers.get('host')}":
        raise _HTTPError(403, "cross-origin request refused")


async def _read_form(receive: Receive) -> dict[str, str]:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _HTTPError(400, "the client went away")
        body += message.get("body", b"")
        if len(body) > _MAX_BODY:
            raise _HTTPError(413, "request body too large")
        if not message.get("more_body", False):
            break
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise _HTTPError(400, "expected a form (application/x-www-form-urlencoded)") from None
    return {name: values[0] for name, values in fields.items()}


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, *_COMMON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(
    send: Send, status: int, data: object, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(data, separators=(",", ":")).encode()
    await _respond(send, status, body, [(b"content-type", b"application/json"), *(headers or [])])
