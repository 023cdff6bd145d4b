"""Event: one server-sent event, validated and encoded once when it is made."""

from __future__ import annotations

from typing import Any, final

from ._encode import check_id, encode_trusted, format_sse, serialize

__all__ = ["Event", "trusted_event"]

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

    def with_id(self, event_id: str) -> Event:
        """This event (sent without an id) with ``event_id`` as its id, for backends.

        A backend's ``publish`` gives a draft its id with this: the id line is checked and
        put first, and the rest of the wire bytes are reused as they are.

        Raises:
            ValueError, TypeError: ``event_id`` cannot be an id (see
                [format_sse][sse_channels.format_sse]), or the event already has one.
        """
        check_id(event_id)
        if self.id is not None:
            raise ValueError(f"the event already has the id {self.id!r}")
        return trusted_event(
            self.data,
            self.event,
            event_id,
            self.retry,
            self.channel,
            b"id: " + event_id.encode() + b"\n" + self.encoded,
        )

    @classmethod
    def _unpickle(
        cls, data: str, event: str | None, id: str | None, retry: int | None, *rest: Any
    ) -> Event:
        # A class attribute, so that pickles name ``sse_channels.Event``, not this module.
        return trusted_event(data, event, id, retry, *rest)

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
            Event._unpickle,
            (self.data, self.event, self.id, self.retry, self.channel, self.encoded),
        )


def trusted_event(
    data: str,
    event: str | None,
    id: str | None,
    retry: int | None,
    channel: str | None,
    encoded: bytes | None = None,
) -> Event:
    """An event from fields already known to be safe (decoded, replayed, built by the store).

    Skips validation; inside the package only. Backends use the public ``Event(...)``
    constructor and [Event.with_id][sse_channels.Event.with_id].
    """
    self = object.__new__(Event)
    if encoded is None:
        encoded = encode_trusted(data, event, id, retry)
    _set(self, "encoded", encoded)
    _set(self, "data", data)
    _set(self, "event", event)
    _set(self, "id", id)
    _set(self, "retry", retry)
    _set(self, "channel", channel)
    return self
