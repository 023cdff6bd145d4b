"""Counters: what a store counts, in one typed place, each counted once.

Events are counted when they are sent (``events_sent``, by the store as the backend
delivers them), and everything about reading (``events_delivered``, ``replayed``,
``gaps``, ``dropped``, ``coalesced``) where a subscription hands a batch out: a
subscription that is closed before it reads counts nothing, and a gap signal counts once
per reader that receives it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Counters"]


@dataclass(slots=True)
class Counters:
    """The store's running totals (``store.statistics()`` copies them)."""

    #: Events appended to this process's logs (sent here or delivered by the backend).
    events_sent: int = 0
    #: Events handed to readers, one per event per reader; gap signals not included.
    events_delivered: int = 0
    #: Subscriptions ended by the ``"disconnect"`` policy.
    slow_consumer_disconnects: int = 0
    #: Events skipped by the ``"drop_oldest"`` policy and ``max_lag``.
    dropped: int = 0
    #: State values skipped because a newer one was there.
    coalesced: int = 0
    #: Events handed out on a resumed subscription's first read that were sent before it
    #: subscribed (from this process's log or the backend's history).
    replayed: int = 0
    #: Gap signals handed to readers.
    gaps: int = 0
    #: Subscriptions ended by ``revoke()``.
    revoked: int = 0

    def snapshot(self) -> dict[str, int]:
        """The totals now, by name."""
        return asdict(self)
