"""The stream entry format: how an event is stored in a channel's stream, and read back.

An entry has id ``"<n>-0"`` and one field. The field's name is the header::

    <previous n>\\n<token>[\\ne<event type>][\\nr<retry>][\\ni<custom id>]

where ``previous n`` is the entry before it in its stream (0 if none: a reader that finds
it further ahead than where it stands knows entries were trimmed in between) and
``token`` tells a retried send whether its first attempt arrived. The field's value is the
data. Readers thus parse two strings per entry.

An entry that does not parse (written by something else, or corrupted) raises
``MalformedEntry`` so that the reader can skip it alone.

Imports ``sse_channels.Event`` (public: a backend builds events from public names alone;
its constructor checks every field again, so an entry written by anything else cannot
forge a line of the stream) and ``_epoch`` for the default id.
"""

from __future__ import annotations

from typing import Any

from ..._event import Event
from ._epoch import event_id

__all__ = ["MalformedEntry", "decode", "encode", "n_of", "n_or_none", "previous_of"]


class MalformedEntry(ValueError):
    """A stream entry that is not in the format this module writes."""


def encode(event: Event) -> list[bytes]:
    """``[the header's optional lines, the data]`` of ``event`` (see the module docstring)."""
    extra = b""
    if event.event is not None:
        extra += b"\ne" + event.event.encode()
    if event.retry is not None:
        extra += b"\nr%d" % event.retry
    if event.id is not None:
        extra += b"\ni" + event.id.encode()
    return [extra, event.data.encode()]


def n_of(entry_id: bytes) -> int:
    """The ``n`` of an entry id ``"<n>-0"``."""
    return int(entry_id.partition(b"-")[0])


def previous_of(header: bytes) -> int:
    """The ``n`` of the entry before this one in its stream (0: none)."""
    return int(header.partition(b"\n")[0])


def decode(channel: str, label: str | None, entry: Any) -> tuple[int, int, Event]:
    """``(n, previous n, event)`` of one entry as XREAD or XRANGE return it.

    Raises:
        MalformedEntry: the entry is not one of ours.
    """
    try:
        entry_id, (header, data) = entry
        n = n_of(entry_id)
        previous_text, _, extra = header.partition(b"\n")
        previous = int(previous_text)
        event_type = custom_id = None
        retry = None
        if b"\n" in extra:  # after the token: event type, retry, custom id, each on its line
            for line in extra.split(b"\n")[1:]:
                kind, value = line[:1], line[1:].decode()
                if kind == b"e":
                    event_type = value
                elif kind == b"r" and value.isascii() and value.isdigit():
                    retry = int(value)
                elif kind == b"i":
                    custom_id = value
                else:
                    raise ValueError(f"unknown header line {line!r}")
        if custom_id is None:
            custom_id = event_id(label or "0", n)
        event = Event(data.decode(), event=event_type, id=custom_id, retry=retry, channel=channel)
    except (TypeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedEntry(f"malformed entry in {channel!r}: {exc}") from None
    return n, previous, event


def n_or_none(entry: Any) -> int | None:
    """The ``n`` of a malformed entry, if at least its id is an entry id."""
    try:
        return n_of(entry[0])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
