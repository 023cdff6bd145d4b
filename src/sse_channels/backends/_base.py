"""The Backend protocol: what a store needs from whatever carries its events.

The store keeps, in each process, one bounded log per channel and does all fan-out to
local subscribers itself. A backend carries events between processes and gives them
their order. It is written against public names only: it receives drafts
([Event][sse_channels.Event] values without an id), gives a draft its id with
[Event.with_id][sse_channels.Event.with_id], and builds the events it reads back from
its storage with the public ``Event(...)`` constructor. Inheriting from ``Backend`` is
not required; [sse_channels.testing.backend_contract][] is the suite that proves an
implementation right, and docs/backends.md walks through writing one.

The rules the store relies on:

**Keys and ids.** Every published event gets an *ordering key*: an ``int`` that grows
with every publish, across all channels of the backend (every process sharing it). Keys
need not start at 0 or be consecutive. ``format_id(key)`` writes a key as an id
(printable ASCII, no spaces, no ``\\r``/``\\n``/NUL), and ``parse_id`` reads it back:
``parse_id(format_id(key)) == key`` for every key handed out, ``None`` for an id that is
not one of ours (a caller-chosen id, an id from another epoch). ``parse_id`` may accept
an id whose key this process has not received yet (another process published it): the
store then skips the channels' events up to that key as they arrive. ``latest_key()``
is at least the key of every event this process published or received.

**Publish.** ``publish(channel, draft)`` stores the draft and returns it with its id
set to ``format_id(key)``, by ``draft.with_id(...)``, or the draft itself if the caller
chose an id. Data, event type, retry and channel arrive unchanged, in ``publish``'s
answer and in every delivery (whose ``encoded`` bytes may order the lines otherwise).

**Delivery.** ``deliver(channel, key, event)`` appends an event to this process's log of
``channel`` and wakes its readers. The backend calls it

- in the event loop's thread, never concurrently, and never from ``publish_sync``;
- for every channel that is watched here (a ``watch`` call not yet undone by
  ``unwatch``). It may deliver other channels too: the store keeps their events as
  history (the in-memory backend delivers every channel, as this process's logs are all
  the history there is), so a backend need not filter a batch it is handing over;
- per channel in increasing key order, each event once; across channels in any order;
- either before ``publish`` returns (the in-memory backend does) or later, from a task
  that reads the shared storage (a networked backend): the store works with both. A key
  at or below one already in the channel's log is ignored, so a backend may deliver an
  event the store already holds (``set()`` puts a state value into its own log when
  ``publish`` returns, to make ``get()`` right at once);
- with ``event=None`` when it knows that the channel's events up to ``key`` were lost
  (its storage forgot or trimmed them before this process read them): the store puts a
  gap signal in their place, and delivery goes on after ``key``.

**Watching, subscribe and resume.** The store calls ``watch(channel)`` when a channel
gets its first local subscriber or listener, and ``unwatch`` when the last one leaves.
``watch`` returns the key this process is complete after: every event of the channel
with a higher key will be delivered here, none skipped (or a ``None`` marker reports
their loss). A backend whose ``deliver`` reaches every process before ``publish``
returns returns 0. A networked backend returns where its reader starts reading the
channel, at most ``latest_key()``; it must start reading from exactly there, so that
nothing falls between what the store has in its log and what the reader delivers.
``watch`` is also called with a ``*`` pattern (see ``sse_channels``' patterns) when its
first subscriber arrives, and ``unwatch`` when the last one leaves: a networked backend
then delivers every channel matching it, including channels another process sends to
for the first time later (from their first event on).

**History.** A subscriber that resumes from a key at or below what ``watch`` returned
needs events this process never received: the store asks, at the subscriber's first
read, ``history(channel, after, through)`` with ``after < through``, where ``through``
is ``watch``'s answer or a key this process has already received.
The answer is ``(gone, events)``: ``gone`` is the highest key of the range that is no
longer retained (``after`` if none; at most ``through``), and ``events`` are the
retained ``(key, event)`` pairs with ``gone < key <= through``, oldest first, built
exactly as ``deliver`` would get them. ``None`` means the backend cannot tell (storage
unreachable, another epoch): the subscriber gets a gap signal. A backend whose
``watch`` returns 0 is never asked.

**Lifecycle.** ``attach`` is called once, first. ``start(task_group)`` is called before
the first ``publish``; with ``async with store`` it gets a task group to run background
reading in, which the store cancels when the block ends. Without one, a backend that
needs background work to deliver raises ``RuntimeError`` from ``watch`` (the store
then registers nothing). ``aclose`` stops background work and releases connections.

All methods but ``publish_sync`` are called from the event loop's thread.
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

    The module docstring states the rules; the contract suite
    [sse_channels.testing.backend_contract][] checks them.
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
        """Store the draft ``event`` and return it with its id (``event.with_id``).

        The returned event's id is ``format_id(key)`` unless the caller chose one (then
        the draft is returned as it is). The backend may call ``deliver`` for it before
        returning or later.
        """

    def publish_sync(self, channel: str, event: Event) -> Event | None:
        """Publish from a thread with no event loop; return ``None`` if not supported.

        Never calls ``deliver`` (it runs outside the event loop's thread); the event
        reaches watching processes as any other.
        """

    def format_id(self, key: int) -> str:
        """The id string for an ordering key: printable ASCII, no spaces at either end."""

    def parse_id(self, event_id: str) -> int | None:
        """The ordering key an id encodes, or ``None`` if it is not one of ours."""

    def latest_key(self) -> int:
        """At least the key of every event published or received here (0 before any)."""

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
