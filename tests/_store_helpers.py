"""Helpers shared by the tests/test_store_*.py modules."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from sse_channels import GAP_EVENT

if TYPE_CHECKING:
    from sse_channels import Event

ID = re.compile(r"[0-9a-z]{4}-[0-9]+")


def data(events: list[Event]) -> list[str]:
    return [event.data for event in events]


def key_of(event_id: str | None) -> int:
    assert event_id is not None
    assert ID.fullmatch(event_id), event_id
    return int(event_id.split("-")[1])


def gap_data(event: Event) -> dict[str, Any]:
    assert event.event == GAP_EVENT
    decoded: dict[str, Any] = json.loads(event.data)
    return decoded
