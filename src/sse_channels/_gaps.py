"""Gap signals: the event that stands where events a reader should have had are gone."""

from __future__ import annotations

import json

from ._event import Event, trusted_event

__all__ = ["GAP_EVENT", "gap_event"]

#: The event type of a gap signal: events the subscriber should have had are gone.
GAP_EVENT = "gap"


def gap_event(channel: str, reason: str, event_id: str) -> Event:
    """A gap signal on ``channel``; resuming from ``event_id`` continues right after it."""
    data = json.dumps({"reason": reason, "channel": channel}, separators=(",", ":"))
    return trusted_event(data, GAP_EVENT, event_id, None, channel)
