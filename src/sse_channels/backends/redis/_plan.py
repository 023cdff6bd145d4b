"""The read plan: which streams the reader reads from where, and what a reply delivers.

The reader multiplexes every watched channel of its process in one blocking ``XREAD``:
its doorbell stream, one stream per followed channel, and (with ``*`` patterns) the
channel registry. This module owns what that needs to know, one object per concern:

- ``Followed``: one channel's stream key, the ``n`` it has been read through, and the ``n``
  its subscribers are complete after (what ``watch`` returned);
- ``PatternWatch``: one pattern's matcher and the ``n`` it was watched at (channels it
  finds later are read from there);
- ``ReadPlan``: the channels followed, which of them were watched by name, the patterns,
  the registry's known names and position, and the doorbell's position. It builds the
  ``XREAD`` command and turns the reply into a batch ``(n, channel, event or None)`` in
  ``n`` order, ``None`` standing for lost events up to ``n``.

Pure: no I/O. Imports ``_keys``, ``_entry``, ``_epoch``, ``_resp`` and the package's pattern
matcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

from ..._pattern import compile_pattern
from ._entry import MalformedEntry, decode, n_of, n_or_none
from ._epoch import MASK
from ._resp import pack

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..._event import Event
    from ._keys import Keys

__all__ = ["READ_COUNT", "Batch", "Followed", "PatternWatch", "ReadPlan"]

#: Entries read per stream per XREAD.
READ_COUNT = 1000

#: ``(n, channel, event)``: an event, or (``None``) the channel's events up to ``n`` lost.
Batch = list[tuple[int, str, "Event | None"]]


@final
class Followed:
    """One channel the reader reads."""

    __slots__ = ("channel", "complete_after", "key", "position")

    def __init__(self, channel: str, key: bytes, after: int) -> None:
        self.channel = channel
        self.key = key
        #: The ``n`` delivered through.
        self.position = after
        #: The ``n`` its subscribers are complete after (nothing later is missed).
        self.complete_after = after


@final
class PatternWatch:
    """One ``*`` pattern the reader follows."""

    __slots__ = ("match", "start")

    def __init__(self, pattern: str, start: int) -> None:
        self.match: Callable[[str], bool] = compile_pattern(pattern)
        #: The ``n`` it was watched at: channels it finds are read from there.
        self.start = start


@final
class ReadPlan:
    """What this process's reader reads (see the module docstring)."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._followed: dict[str, Followed] = {}
        self._by_key: dict[bytes, Followed] = {}
        self._explicit: set[str] = set()
        self._patterns: dict[str, PatternWatch] = {}
        #: Patterns whose existing channels are not followed yet (the registry is unread).
        self._pending: set[str] = set()
        #: Every channel name in the registry (``None``: not read, or not needed).
        self._known: set[str] | None = None
        self.registry_position = 0
        self.wake_id = b"0-0"

    # -- what is followed ----------------------------------------------------------------

    @property
    def streams(self) -> int:
        """How many channel streams the reader reads."""
        return len(self._followed)

    @property
    def patterns(self) -> int:
        """How many patterns are watched."""
        return len(self._patterns)

    @property
    def needs_registry(self) -> bool:
        """The registry must be read (in full) before the next ``XREAD``."""
        return bool(self._patterns) and self._known is None

    def positions(self) -> Iterator[tuple[str, int]]:
        """Each followed channel and the ``n`` it was read through."""
        for followed in list(self._followed.values()):
            yield followed.channel, followed.position

    def watch(self, channel: str, latest_n: int) -> tuple[int, bool]:
        """Follow ``channel`` by name; ``(n it is complete after, whether it is new)``."""
        self._explicit.add(channel)
        followed = self._followed.get(channel)
        if followed is not None:
            return followed.complete_after, False
        return self._follow(channel, latest_n).complete_after, True

    def unwatch(self, channel: str) -> None:
        self._explicit.discard(channel)
        if channel in self._followed and not self._matches(channel):
            self._unfollow(channel)

    def watch_pattern(self, pattern: str, latest_n: int) -> None:
        """Follow every channel matching ``pattern``, those created later included."""
        watch = self._patterns[pattern] = PatternWatch(pattern, latest_n)
        if self._known is None:
            self._pending.add(pattern)  # the reader loads the registry first
            return
        for name in self._known:
            if watch.match(name) and name not in self._followed:
                self._follow(name, watch.start)

    def unwatch_pattern(self, pattern: str) -> None:
        self._patterns.pop(pattern, None)
        self._pending.discard(pattern)
        for name in list(self._followed):
            if name not in self._explicit and not self._matches(name):
                self._unfollow(name)
        if not self._patterns:
            self._known = None  # stop following the registry; reload it when needed

    def restart(self, start_n: int) -> list[str]:
        """A new epoch began at ``start_n``: read everything again from there.

        Returns:
            The channels followed: what they had not read yet is gone (each gets a gap).
        """
        for watch in self._patterns.values():
            watch.start = start_n
        if self._patterns:
            self._known = None  # the registry is new as well: read it again
            self._pending = set(self._patterns)
        self.registry_position = start_n
        for followed in self._followed.values():
            followed.position = followed.complete_after = start_n
        return list(self._followed)

    def registry_loaded(self, known: set[str], last: int, start_n: int) -> None:
        """The whole registry was read: ``known`` names, the newest entry's ``last`` n."""
        self._known = known
        self.registry_position = max(last, start_n)
        for pattern in self._pending:
            watch = self._patterns[pattern]
            for name in known:
                if watch.match(name) and name not in self._followed:
                    self._follow(name, watch.start)
        self._pending.clear()

    def _matches(self, channel: str) -> bool:
        return any(watch.match(channel) for watch in self._patterns.values())

    def _follow(self, channel: str, after: int) -> Followed:
        followed = Followed(channel, self._keys.stream(channel), after)
        self._followed[channel] = followed
        self._by_key[followed.key] = followed
        return followed

    def _unfollow(self, channel: str) -> None:
        followed = self._followed.pop(channel)
        self._by_key.pop(followed.key, None)

    # -- reading -------------------------------------------------------------------------

    def command(self, block_ms: int) -> bytes:
        """The blocking ``XREAD`` of everything followed."""
        keys = [self._keys.wake]
        ids = [self.wake_id]
        for followed in self._followed.values():
            keys.append(followed.key)
            ids.append(b"%d-0" % followed.position)
        if self._patterns:
            keys.append(self._keys.registry)
            ids.append(b"%d-0" % self.registry_position)
        head = (b"XREAD", b"COUNT", b"%d" % READ_COUNT, b"BLOCK", b"%d" % block_ms, b"STREAMS")
        return pack((*head, *keys, *ids))

    def take(
        self,
        response: Any,
        label: str | None,
        malformed: Callable[[MalformedEntry], None],
    ) -> Batch:
        """Advance past an ``XREAD`` reply; what it delivers, in ``n`` order.

        A malformed entry is skipped alone: ``malformed`` hears of it, and its channel
        gets a gap in its place; every other entry of the reply is delivered.
        """
        items = list(response.items() if isinstance(response, dict) else response)
        # A stream whose read stopped at COUNT has more: entries of the other streams past
        # its last one wait for the next read, so that every channel goes out in key order.
        cut = [n_of(entries[-1][0]) for _, entries in items if len(entries) >= READ_COUNT]
        limit = min(cut) if cut else MASK
        batch: Batch = []
        for stream, entries in items:
            if stream == self._keys.wake:
                self.wake_id = entries[-1][0]
            elif stream == self._keys.registry:
                self._registered(entries)
            else:
                self._collect(stream, entries, batch, limit, label, malformed)
        batch.sort(key=_first)
        return batch

    def _registered(self, entries: list[Any]) -> None:
        known = self._known
        for entry in entries:
            n = n_or_none(entry)
            if n is None:
                continue
            self.registry_position = n
            try:
                name = entry[1][1].decode()
            except (TypeError, ValueError, IndexError, AttributeError):
                continue  # not a registry entry of ours
            if known is not None:
                known.add(name)
            if name in self._followed:
                continue
            starts = [w.start for w in self._patterns.values() if w.match(name)]
            if starts:
                # From its first event, unless it was (re)created before the pattern came.
                self._follow(name, max(n - 1, min(starts)))

    def _collect(
        self,
        stream: bytes,
        entries: list[Any],
        batch: Batch,
        limit: int,
        label: str | None,
        malformed: Callable[[MalformedEntry], None],
    ) -> None:
        followed = self._by_key.get(stream)
        if followed is None:
            return  # unwatched while the read was under way
        channel = followed.channel
        position = followed.position
        for entry in entries:
            try:
                n, previous, event = decode(channel, label, entry)
            except MalformedEntry as exc:
                found = n_or_none(entry)
                if found is not None and found <= position:
                    continue
                malformed(exc)
                if found is None or found > limit:
                    break
                batch.append((found, channel, None))  # it held something we cannot deliver
                position = found
                continue
            if n <= position:
                continue
            if n > limit:
                break
            if previous > position:
                # Trimmed before we read it: the events after ``position`` up to the
                # previous entry are gone. Say so, then go on.
                batch.append((previous, channel, None))
            batch.append((n, channel, event))
            position = n
        followed.position = position


def _first(item: tuple[int, str, Event | None]) -> int:
    return item[0]
