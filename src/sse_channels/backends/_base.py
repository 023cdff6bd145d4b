"""The Backend protocol: what a store needs from whatever carries its events.

The store keeps, in each process, one bounded log per channel and does all fan-out to
local subscribers itself. A backend only has to:

1. give every event a store-wide *ordering key* (an ``int`` that grows with every send,
   across all channels) and an id string that encodes it (``format_id`` / ``parse_id``);
2. hand each event, with its key, to ``deliver(channel, key, event)`` in every process
   that watches the channel, in key order per channel (the in-memory backend calls it
   before ``publish`` returns; a networked backend calls it from its reader). When it
   knows that events of a watched channel up to ``key`` were lost (its server forgot them,
   or trimmed them before they were read), it calls ``deliver(channel, key, None)``: the
   store puts a gap signal in their place;
3. answer ``history(channel, after, through)`` for resume requests that reach further back
   than this process's log, with ``(gone, events)``: the events it still retains in that
   range, and the highest key of the range it no longer retains (``after`` if none; the
   subscriber then gets a gap signal first), or ``None`` if it cannot tell (a gap, then
   this process's log). The store asks only for keys at or below what ``watch`` returned,
   so a backend whose ``watch`` returns 0 is never asked.

``watch`` is also called with a ``*`` pattern (when its first subscriber arrives) and
``unwatch`` with it when the last one leaves: a networked backend then delivers every
channel matching it, including channels first sent to later by another process.

Third-party backends implement this Protocol; inheriting from it is not required. Every
backend should pass the contract suite in ``tests/backend_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .._event import Event

__all__ = ["Backend", "Deliver"]

#: ``deliver(channel, key, event)``: append an event to the local log and wake readers;
#: ``event=None`` reports that the channel's events up to ``key`` were lost.
Deliver = Callable[[str, int, "Event | None"], None]


@runtime_checkable
class Backend(Protocol):
    """The contract between a [ChannelStore][sse_channels.ChannelStore] and its transport.

    All methods but ``publish_sync`` are called from the event loop's thread.
    """

    def attach(self, deliver: Deliver) -> None:
        """Called once by the store before anything else, with its delivery callback."""

    async def start(self, task_group: TaskGroup | None) -> None:
        """Connect, and start any background reading in ``task_group`` (idempotent).

        ``async with store:`` calls it with a task group that lives as long as the block,
        so background tasks have an owner that cancels them. Without ``async with``, the
        store calls it with ``None`` on first use; a backend that needs background work to
        deliver events then raises from ``watch`` instead.
        """

    async def publish(self, channel: str, event: Event) -> Event:
        """Store ``event`` (which has no id yet) and return it with its id set.

        The returned event's id must be ``format_id(key)`` unless the caller chose one.
        """

    def publish_sync(self, channel: str, event: Event) -> Event | None:
        """Publish from a thread with no event loop; return ``None`` if not supported."""

    def format_id(self, key: int) -> str:
        """The id string for an ordering key: printable ASCII, no spaces at either end."""

    def parse_id(self, event_id: str) -> int | None:
        """The ordering key an id encodes, or ``None`` if it is not one of ours."""

    def latest_key(self) -> int:
        """The highest ordering key handed out so far (0 before the first event)."""

    async def history(
        self, channel: str, after: int, through: int
    ) -> tuple[int, list[tuple[int, Event]]] | None:
        """``(gone, events)``: ``channel``'s retained events with ``gone < key <= through``,
        oldest first, where ``gone`` (at least ``after``) is the highest key in the range
        that is no longer retained; ``None`` if unknown."""

    def watch(self, channel: str) -> int:
        """Deliver ``channel`` (or a ``*`` pattern) here; return the key it is complete after.

        Raises:
            RuntimeError: the backend cannot deliver yet (e.g. it was started without a
                task group); the store then registers nothing.
        """

    def unwatch(self, channel: str) -> None:
        """Stop delivering ``channel`` to this process (its last local subscriber left)."""

    def statistics(self) -> dict[str, Any]:
        """Backend health and counters, merged into ``store.statistics()``."""

    async def aclose(self) -> None:
        """Stop background work and release connections."""
