"""Snapshot channels: a reader gets the channel's current state first, and again after a gap.

A channel whose events are changes to some state (presence: joins and leaves) is useless
to a reader that missed some of them. ``ChannelStore.provide_snapshot`` registers, for a
channel or a ``*`` pattern, a provider of that state. A subscription that reads such a
channel then hands out a snapshot event:

- first, when it starts live (no ``last_event_id``); its id is the store's newest key when
  it subscribed, so a reader that resumes from it gets every change made since (a change
  already in the snapshot may come again: apply changes so that repeating one is harmless);
- in place of every gap signal on that channel (a resume history cannot cover, a trimmed
  log, a ``drop_oldest`` skip, a backend that lost events), with the gap's id.

A resume that history covers gets the changes it missed and no snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, final

from ._gaps import GAP_EVENT

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["SnapshotLink", "SnapshotPlan", "SnapshotProvider"]

#: ``provider(channel)``: the state to send as ``channel``'s snapshot (``None``: none now).
SnapshotProvider = Callable[[str], Awaitable[Any]]


class SnapshotLink(Protocol):
    """What a snapshot plan needs from its store: build the event from the provider's data."""

    def snapshot_event(self, channel: str, data: Any, event: str, event_id: str) -> Event: ...


@final
class SnapshotPlan:
    """One subscription's snapshot channels: what to send first, and what replaces a gap."""

    __slots__ = ("_first_id", "_link", "_pending", "_providers")

    def __init__(
        self,
        link: SnapshotLink,
        providers: dict[str, tuple[SnapshotProvider, str]],
        *,
        first_id: str | None,
    ) -> None:
        self._link = link
        self._providers = providers
        #: Channels whose snapshot is still to be sent first (a live start), then empty.
        self._pending = list(providers) if first_id is not None else []
        self._first_id = first_id

    @property
    def pending(self) -> bool:
        """A snapshot is still to be handed out before anything else."""
        return bool(self._pending)

    async def first(self) -> list[Event]:
        """The snapshots a live start begins with (each channel's, once)."""
        events: list[Event] = []
        assert self._first_id is not None
        while self._pending:
            channel = self._pending[0]
            found = await self._make(channel, self._first_id)
            self._pending.pop(0)  # only now: a provider that failed is asked again
            if found is not None:
                events.append(found)
        return events

    async def fill_gaps(self, batch: list[Event]) -> list[Event]:
        """``batch`` with each gap signal of a snapshot channel replaced by a snapshot."""
        for index, event in enumerate(batch):
            if event.event == GAP_EVENT and event.channel in self._providers:
                assert event.channel is not None
                assert event.id is not None
                found = await self._make(event.channel, event.id)
                if found is not None:
                    batch[index] = found
        return batch

    async def _make(self, channel: str, event_id: str) -> Event | None:
        provider, event = self._providers[channel]
        data = await provider(channel)
        if data is None:
            return None
        return self._link.snapshot_event(channel, data, event, event_id)
