"""Commands in the Redis protocol (RESP), packed by hand: what redis-py writes, without its layers.

Imports nothing of ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["pack", "pack_args"]


def pack(args: Iterable[bytes]) -> bytes:
    """One command: an array of bulk strings."""
    parts = [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args]
    return b"*%d\r\n%s" % (len(parts), b"".join(parts))


def pack_args(args: Iterable[bytes]) -> bytes:
    """Bulk strings without the array header: the end of a command whose start is cached."""
    return b"".join([b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args])
