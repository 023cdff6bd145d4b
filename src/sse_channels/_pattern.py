"""Channel patterns: ``*`` matches any run of characters, in time linear in the name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["compile_pattern", "is_pattern"]


def is_pattern(name: str) -> bool:
    """A channel name with ``*`` in it is a pattern."""
    return "*" in name


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """Return a predicate that tells whether a channel name matches ``pattern``.

    Only ``*`` is special. The literal pieces between stars are found left to right with
    ``str.find``; taking the leftmost match of each piece is always safe for ``*``-only
    patterns, so there is no backtracking and no regex (no catastrophic cases).
    """
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern.__eq__
    head, *middle, tail = pieces
    min_length = len(head) + len(tail) + sum(map(len, middle))

    def match(name: str) -> bool:
        if len(name) < min_length or not name.startswith(head) or not name.endswith(tail):
            return False
        position, stop = len(head), len(name) - len(tail)
        for piece in middle:
            found = name.find(piece, position, stop)
            if found < 0:
                return False
            position = found + len(piece)
        return True

    return match
