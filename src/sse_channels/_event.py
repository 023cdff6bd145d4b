"""Event: one server-sent event, validated and encoded once when it is made."""

from __future__ import annotations

from typing import Any, final

from ._encode import _encode_trusted, format_sse, serialize

__all__ = ["Event"]

_set = object.__setattr__


@final
class Event:
    """One server-sent event: an immutable value that keeps its own wire bytes.

    The bytes are computed once, when the event is made, so that delivering it to many
    subscribers copies a reference and never re-encodes.

    Args:
        data: the payload. ``str`` is sent as is (line breaks become several ``data:``
            lines); anything else is serialised to compact JSON by ``serializer``.
        event: the event type (``EventSource.addEventListener(type, ...)``); ``None`` is
            the default ``message`` type.
        id: the event id, sent back by the browser as ``Last-Event-ID``. ``None`` writes
            no id line; ``""`` resets the browser's last event id.
        retry: the reconnection delay in milliseconds the browser should use.
        channel: the channel the event was sent on; not part of the wire format.
        serializer: turns non-``str`` data into ``str`` or ``bytes`` (default: ``json``).

    Raises:
        ValueError: a field would break the stream (see [format_sse][sse_channels.format_sse]).
        TypeError: a field has the wrong type, or ``data`` cannot be serialised.
    """

    __slots__ = ("channel", "data", "encoded", "event", "id", "retry")

    data: str
    event: str | None
    id: str | None
    retry: int | None
    channel: str | None
    #: The event on the wire, ready to write: ``format_sse(...)`` of the fields above.
    encoded: bytes

    def __init__(
        self,
        data: Any = "",
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        channel: str | None = None,
        serializer: Any = None,
    ) -> None:
        text = data if type(data) is str else serialize(data, serializer)
        _set(self, "encoded", format_sse(text, event=event, id=id, retry=retry))
        _set(self, "data", text)
        _set(self, "event", event)
        _set(self, "id", id)
        _set(self, "retry", retry)
        _set(self, "channel", channel)

    @classmethod
    def _trusted(
        cls,
        data: str,
        event: str | None,
        id: str | None,
        retry: int | None,
        channel: str | None,
        encoded: bytes | None = None,
    ) -> Event:
        """Build an event from fields already known to be safe (decoded, or replayed)."""
        self = object.__new__(cls)
        if encoded is None:
            encoded = _encode_trusted(data, event, id, retry)
        _set(self, "encoded", encoded)
        _set(self, "data", data)
        _set(self, "event", event)
        _set(self, "id", id)
        _set(self, "retry", retry)
        _set(self, "channel", channel)
        return self

    def _with_assigned_id(self, event_id: str, channel: str) -> Event:
        """This draft (sent without an id) as published: the backend's id line goes first.

        ``event_id`` must already be header-safe; the rest of the bytes are reused as they are.
        """
        return Event._trusted(
            self.data,
            self.event,
            event_id,
            self.retry,
            channel,
            b"id: " + event_id.encode() + b"\n" + self.encoded,
        )

    def replace(self, **changes: Any) -> Event:
        """Return a copy with some fields changed, validated and encoded anew."""
        fields: dict[str, Any] = {
            "data": self.data,
            "event": self.event,
            "id": self.id,
            "retry": self.retry,
            "channel": self.channel,
        }
        fields.update(changes)
        return Event(**fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Event is immutable; use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Event is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.data == other.data
            and self.event == other.event
            and self.id == other.id
            and self.retry == other.retry
            and self.channel == other.channel
        )

    def __hash__(self) -> int:
        return hash((self.data, self.event, self.id, self.retry, self.channel))

    def __repr__(self) -> str:
        parts = [f"data={self.data!r}"]
        for name in ("event", "id", "retry", "channel"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return f"Event({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Event._trusted,
            (self.data, self.event, self.id, self.retry, self.channel, self.encoded),
        )
