"""Which channels this process delivers, and which of them have grown since their last trim.

The reader reads the whole log in one order and hands over only the rows of channels that
are watched here by name or match a watched ``*`` pattern. Every row it reads, watched
or not, counts towards its channel's next retention trim.

Pure: no I/O. Imports the package's pattern matcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ..._pattern import compile_pattern, is_pattern

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Watching"]

#: Channels remembered as reached through a pattern (for gaps on a new epoch).
_MATCHED_LIMIT = 100_000


@final
class Watching:
    """The watched names and patterns, and the per-channel row counts since the last trim."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._patterns: dict[str, Callable[[str], bool]] = {}
        #: Channels a pattern has delivered (a new epoch gives each a gap).
        self._matched: set[str] = set()
        self._grown: dict[str, int] = {}

    @property
    def active(self) -> bool:
        """Whether anything is watched here (else the reader need not read rows)."""
        return bool(self._names or self._patterns)

    @property
    def channels(self) -> int:
        return len(self._names)

    @property
    def patterns(self) -> int:
        return len(self._patterns)

    def watch(self, name: str) -> None:
        if is_pattern(name):
            self._patterns[name] = compile_pattern(name)
        else:
            self._names.add(name)

    def unwatch(self, name: str) -> None:
        if is_pattern(name):
            self._patterns.pop(name, None)
            if not self._patterns:
                self._matched.clear()
        else:
            self._names.discard(name)

    def wants(self, channel: str) -> bool:
        """Whether ``channel``'s events are delivered here."""
        if channel in self._names:
            return True
        for match in self._patterns.values():
            if match(channel):
                if len(self._matched) < _MATCHED_LIMIT:
                    self._matched.add(channel)
                return True
        return False

    def delivered(self) -> list[str]:
        """The channels whose subscribers a lost log concerns: named ones and matched ones."""
        return sorted(self._names | {c for c in self._matched if self.wants(c)})

    def grew(self, channel: str, rows: int = 1) -> None:
        """``rows`` more rows of ``channel`` were read."""
        self._grown[channel] = self._grown.get(channel, 0) + rows

    def to_trim(self, threshold: int) -> list[str]:
        """The channels that grew by ``threshold`` rows or more; their counts start over."""
        ready = [channel for channel, n in self._grown.items() if n >= threshold]
        for channel in ready:
            del self._grown[channel]
        if len(self._grown) > _MATCHED_LIMIT:
            # Very many channels that each grew a little: start their counts over rather
            # than keep them all (trimming is approximate by design).
            self._grown.clear()
        return ready
