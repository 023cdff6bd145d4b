"""format_sse(): the WHATWG event-stream encoder. Pure, synchronous, no I/O.

Rules (HTML Living Standard, "Server-sent events", parsing an event stream):

- lines end at CRLF, LF or CR and nowhere else, so only those split ``data`` into lines;
- ``field: value`` loses exactly one space after the colon, so we always write the space;
- a block dispatches only if it has a ``data`` line, so ``""`` still writes ``data: ``;
- an ``id`` containing NUL is ignored by browsers, and a CR or LF would start a new field.

Bad input raises here, at the call, never later inside a running stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["RESERVED_EVENT_NAMES", "check_id", "encode_trusted", "format_sse", "serialize"]

#: Event types that ``EventSource`` fires for its own connection state; a server event with
#: one of these names would be mistaken for a connection error or a (re)open.
RESERVED_EVENT_NAMES = frozenset({"error", "open"})
_RESERVED = RESERVED_EVENT_NAMES

Serializer = Callable[[Any], "str | bytes"]

_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def serialize(data: Any, serializer: Serializer | None = None) -> str:
    """Turn a non-``str`` payload into text: compact JSON unless ``serializer`` is given.

    A ``str`` subclass (e.g. a ``StrEnum`` member) is text already and is sent as is.

    Raises:
        TypeError: the value cannot be serialised (including NaN and infinities, which are
            not JSON).
    """
    if isinstance(data, str):
        return str.__str__(data)
    try:
        out = (_json_dumps if serializer is None else serializer)(data)
    except Exception as exc:  # json raises TypeError/ValueError, other serialisers their own
        how = (
            "pass a str, or a serializer= that handles it (e.g. serializer=orjson.dumps)"
            if serializer is None
            else "the serializer= given failed on it"
        )
        raise TypeError(
            f"cannot serialise data of type {type(data).__name__} for an SSE event: {exc}; {how}"
        ) from exc
    if type(out) is str:
        return out
    if type(out) is bytes:
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TypeError(f"serializer returned bytes that are not UTF-8: {exc}") from exc
    if not isinstance(out, str):
        raise TypeError(f"serializer must return str or bytes, not {type(out).__name__}")
    # An exact str: a subclass would be serialised again by format_sse (type(data) is not str).
    return str.__str__(out)


def format_sse(
    data: Any = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
    serializer: Serializer | None = None,
) -> bytes:
    """Encode one event-stream block (an event, or a comment) as UTF-8 bytes.

    Args:
        data: the payload; ``None`` writes no data line (the block then never dispatches).
            A ``str`` is split into one ``data: `` line per line, at CRLF, CR or LF only.
            Anything else becomes compact JSON (or whatever ``serializer`` returns).
        event: the event type. Must not contain CR or LF, and must not be ``"error"`` or
            ``"open"``, which ``EventSource`` uses for its own connection events.
        id: the event id. ``None`` writes no id line; ``""`` writes ``id: `` which resets
            the browser's last event id. Since the browser sends the id back in the
            ``Last-Event-ID`` header, it must be printable ASCII (no control characters,
            so no NUL, CR or LF) with no leading or trailing whitespace.
        retry: reconnection delay in milliseconds: a non-negative ``int``.
        comment: text written as ``:`` comment lines; browsers ignore them, proxies see
            traffic (heartbeats). A comment alone never dispatches an event.
        serializer: callable for non-``str`` data returning ``str`` or ``bytes``, e.g.
            ``orjson.dumps``. Default: ``json`` with compact separators.

    Returns:
        The block, terminated by a blank line.

    Raises:
        TypeError: a field has the wrong type, or ``data`` cannot be serialised.
        ValueError: a field would break the stream: CR/LF in ``event`` or ``id``, a bad
            ``id`` (see above), a negative ``retry``, a reserved event name, text that is
            not encodable as UTF-8 (lone surrogates), or no field at all.
    """
    # Hot path: each check is one cheap C-level test; a failure defers to a helper that
    # finds the precise reason and raises. Event-type lines are cached: apps use few types.
    c = e = i = r = d = ""
    if comment is not None:
        if type(comment) is not str:
            raise TypeError(f"comment must be str, not {type(comment).__name__}")
        c = _lines(": ", comment)
    if event is not None:
        # The type test keeps a str subclass equal to a cached name from skipping validation.
        e = (type(event) is str and _event_lines.get(event)) or _event_line(event)
    if id is not None:
        if not (type(id) is str and id.isascii() and id.isprintable() and id.strip(" ") == id):
            check_id(id)
        i = f"id: {id}\n"
    if retry is not None:
        if type(retry) is not int or retry < 0:
            _check_retry(retry)
        r = f"retry: {retry}\n"
    if data is not None:
        if type(data) is not str:
            data = serialize(data, serializer)
        if "\n" in data or "\r" in data:
            d = _lines("data: ", data)
        else:
            d = f"data: {data}\n"
    elif not (c or e or i or r):
        raise ValueError("format_sse() needs at least one of data, event, id, retry, comment")
    try:
        return f"{c}{e}{i}{r}{d}\n".encode()
    except UnicodeEncodeError as exc:
        raise _not_utf8(exc) from None


def _lines(prefix: str, text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join([f"{prefix}{line}\n" for line in text.split("\n")])


def _not_utf8(exc: UnicodeEncodeError) -> ValueError:
    bad = exc.object[exc.start : exc.end]
    return ValueError(
        f"text is not encodable as UTF-8 (lone surrogate {bad!r} at position {exc.start})"
    )


_event_lines: dict[object, str] = {}


def _event_line(event: object) -> str:
    """Validate an event type and return its ``event:`` line, caching the first 256 types."""
    _check_event(event)
    line = f"event: {event}\n"
    if len(_event_lines) < 256:
        _event_lines[event] = line
    return line


def _check_event(event: object) -> None:
    if type(event) is not str:
        raise TypeError(f"event must be str or None, not {type(event).__name__}")
    try:
        event.encode()
    except UnicodeEncodeError as exc:
        raise _not_utf8(exc) from None
    if "\r" in event or "\n" in event:
        raise ValueError(f"event must not contain CR or LF (it would start a new field): {event!r}")
    if event in RESERVED_EVENT_NAMES:
        raise ValueError(
            f"event name {event!r} collides with EventSource's own {event!r} event; pick another"
        )


def check_id(id: object) -> None:
    if type(id) is not str:
        raise TypeError(f"id must be str or None, not {type(id).__name__}")
    if id.isascii() and id.isprintable() and id.strip(" ") == id:
        return
    if "\r" in id or "\n" in id:
        raise ValueError(f"id must not contain CR or LF (it would start a new field): {id!r}")
    if "\0" in id:
        raise ValueError(f"id must not contain NUL (browsers ignore such an id): {id!r}")
    if not id.isascii():
        raise ValueError(
            f"id must be ASCII: it comes back in the Last-Event-ID header, which servers "
            f"decode inconsistently: {id!r}"
        )
    if not id.isprintable():
        raise ValueError(f"id must not contain control characters (Last-Event-ID header): {id!r}")
    raise ValueError(
        f"id must not start or end with a space (HTTP strips it from Last-Event-ID): {id!r}"
    )


def _check_retry(retry: object) -> None:
    if type(retry) is not int:
        raise TypeError(f"retry must be an int number of milliseconds, not {type(retry).__name__}")
    if retry < 0:
        raise ValueError(f"retry must not be negative: {retry}")


def encode_trusted(data: str, event: str | None, id: str | None, retry: int | None) -> bytes:
    """Encode fields that cannot break the stream (they came out of a decoder or a store)."""
    text = ""
    if event is not None:
        text = f"event: {event}\n"
    if id is not None:
        text = f"{text}id: {id}\n"
    if retry is not None:
        text = f"{text}retry: {retry}\n"
    return f"{text}{_lines('data: ', data)}\n".encode()
