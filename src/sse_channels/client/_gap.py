"""Gap signals as typed values: the server's way of saying that events are gone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from .._store import GAP_EVENT

if TYPE_CHECKING:
    from .._event import Event

__all__ = ["Gap", "as_item"]


@final
@dataclass(frozen=True, slots=True)
class Gap:
    """Events this client should have had are gone; the application should resynchronise.

    A server built with sse-channels sends it as an event of type ``gap`` (see
    [GAP_EVENT][sse_channels.GAP_EVENT]) with data ``{"reason": ..., "channel": ...}``;
    the client turns such an event into this value instead of an [Event][sse_channels.Event].

    Attributes:
        reason: why: ``"expired"`` (history no longer covers the resume point),
            ``"unknown_id"``, ``"slow_consumer"``, ``"lost"``, or what another server says.
        channel: the channel that lost events, or ``None`` if the server did not say.
        id: the stream's last event id after the gap (a reconnect resumes from here).
        event: the event as it came off the wire.
    """

    reason: str
    channel: str | None
    id: str | None
    event: Event


def as_item(event: Event) -> Event | Gap:
    """``event`` as a ``Gap`` if it is a well-formed gap signal, else ``event`` itself."""
    if event.event != GAP_EVENT:
        return event
    try:
        data = json.loads(event.data)
    except ValueError:
        return event
    if not isinstance(data, dict) or not isinstance(data.get("reason"), str):
        return event
    channel = data.get("channel")
    return Gap(data["reason"], channel if isinstance(channel, str) else None, event.id, event)
