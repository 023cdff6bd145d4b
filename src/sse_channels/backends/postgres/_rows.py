"""Rows to events: the columns an event is stored in, and the event built from a row.

Imports ``sse_channels.Event`` (public: its constructor checks every field again, so a
row written by anything else cannot forge a line of the stream) and ``_ids``.
"""

from __future__ import annotations

from typing import Any

from ..._event import Event
from ._ids import event_id

__all__ = ["MalformedRow", "columns", "event_of"]


class MalformedRow(ValueError):
    """A row that does not make an event (written by something else, or corrupted)."""


def columns(event: Event) -> tuple[bytes, str | None, int | None, str | None]:
    """``(data, event, retry, event_id)`` as the ``events`` table stores them."""
    return event.data.encode(), event.event, event.retry, event.id


def event_of(
    channel: str,
    label: str,
    txid: int,
    row_id: int,
    data: Any,
    event_type: Any,
    retry: Any,
    custom_id: Any,
) -> Event:
    """The event a row stores (its id ``event_id(label, txid, id)`` unless it has its own).

    Raises:
        MalformedRow: the row does not make a valid event.
    """
    try:
        text = bytes(data).decode()
        identifier = custom_id if custom_id is not None else event_id(label, txid, row_id)
        return Event(text, event=event_type, id=identifier, retry=retry, channel=channel)
    except (TypeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedRow(f"row {txid}.{row_id} of {channel!r}: {exc}") from None
