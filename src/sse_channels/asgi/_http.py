"""The HTTP edge of a stream: its headers, the request's last event id, short answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from .._types import Scope, Send

__all__ = [
    "HEARTBEAT",
    "SSE_HEADERS",
    "HeaderItems",
    "header_fields",
    "last_event_id",
    "plain_response",
    "raw_headers",
]

#: The response headers of an event stream. No ``Connection`` header (forbidden on HTTP/2;
#: the server manages keep-alive) and no ``Content-Encoding``: an event stream is never
#: compressed, since a compressor holds bytes back until it has enough to squeeze.
SSE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
    }
)

#: The comment written when a stream has been idle for ``heartbeat`` seconds.
HEARTBEAT = b": ping\n\n"

#: Headers as a caller may give them: a mapping or ``(name, value)`` pairs.
HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]]

# Headers a caller may not add: they would break streaming or contradict the above.
FORBIDDEN_HEADERS = frozenset(
    {"connection", "content-length", "transfer-encoding", "content-encoding", "keep-alive"}
)


def header_fields(
    headers: HeaderItems | None = None, *, one_per_name: bool = False
) -> list[tuple[str, str]]:
    """``SSE_HEADERS`` plus ``headers``, lower-cased and checked, as ``str`` pairs.

    A header named like an SSE header (in any case) replaces it; others are added in order.
    With ``one_per_name``, for frameworks whose responses keep one value per name (Django,
    Litestar), a name given twice is refused instead of silently losing a value.

    Raises:
        ValueError: a refused header (``Connection``, ``Content-Length``,
            ``Transfer-Encoding``, ``Keep-Alive``, ``Content-Encoding``), CR, LF or NUL
            in one, or (``one_per_name``) a name given twice.
        TypeError: a name or value is not ``str``.
    """
    merged = dict(SSE_HEADERS)
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    extra: list[tuple[str, str]] = []
    for name, value in items:
        if type(name) is not str or type(value) is not str:
            raise TypeError("header names and values must be str")
        lower = name.lower()
        if lower in FORBIDDEN_HEADERS:
            raise ValueError(f"an event stream must not set the {name!r} header")
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(f"invalid header: {name!r}: {value!r}")
        if lower in merged:
            merged[lower] = value
        else:
            extra.append((lower, value))
    fields = [*merged.items(), *extra]
    if one_per_name:
        seen: set[str] = set()
        for name, _ in fields:
            if name in seen:
                raise ValueError(
                    f"header {name!r} is given more than once; this framework keeps one value "
                    "per header (set cookies on the response with its own API)"
                )
            seen.add(name)
    return fields


def raw_headers(headers: HeaderItems | None = None) -> list[tuple[bytes, bytes]]:
    """``SSE_HEADERS`` plus ``headers`` as ASGI raw headers (lower-case names, latin-1).

    Raises:
        ValueError, TypeError: as for [header_fields][sse_channels.asgi.header_fields].
    """
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in header_fields(headers)]


class _HasScope(Protocol):
    @property
    def scope(self) -> Any: ...


def last_event_id(request: Scope | _HasScope) -> str | None:
    """The request's last event id: the ``Last-Event-ID`` header, else ``?last_event_id=``.

    ``request`` is an ASGI scope or any request object with a ``.scope`` (Starlette,
    Django under ASGI, Litestar, Quart). ``EventSource`` sends the header when it
    reconnects; it cannot set headers on its first connection, so a page that knows
    where to resume puts the id in the URL instead. Returns ``None`` when neither is
    present or the value is empty.
    """
    scope: Scope = request if isinstance(request, Mapping) else request.scope
    for name, value in scope.get("headers", ()):
        if name.lower() == b"last-event-id" and value:
            return bytes(value).decode("latin-1")
    query = scope.get("query_string", b"")
    if query and b"last_event_id" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if name == "last_event_id" and value:
                return str(value)
    return None


async def plain_response(
    send: Send, status: int, *, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete short ``text/plain`` response (no body for 204 and 304)."""
    if status in (204, 304):
        head = [(b"cache-control", b"no-store"), *headers]
        body = b""
    else:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        body = f"{status} {phrase}".rstrip().encode() + b"\n"
        head = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *headers,
        ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def check_status(status: object) -> int:
    """``status`` if it is an ``int`` HTTP status.

    Raises:
        ValueError: it is not.
    """
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"status must be an int HTTP status, not {status!r}")
    return status
