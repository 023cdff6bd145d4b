"""The names of a backend's keys in Redis, all under one prefix.

::

    <prefix>seq          the store-wide counter: the n in every event's ordering key
    <prefix>epoch        "<label>:<start>": a new label whenever the counter starts over
    <prefix>ch:<name>    one stream per channel (name kept exactly); entry ids are "<n>-0"
    <prefix>channels     one entry per channel creation, read only for ``*`` patterns
    <prefix>last         with ``ttl`` only: each channel's newest n (a hash), so that a
                         stream created again after it expired knows what came before
    <prefix>wake:<id>    a per-process doorbell that wakes its reader when it must re-plan

Imports nothing of ours.
"""

from __future__ import annotations

from typing import final

__all__ = ["Keys"]

#: Stream keys remembered per backend; past this, they are built on every call.
_CACHED = 100_000


@final
class Keys:
    """Every key one backend uses, built once (stream keys are cached per channel)."""

    __slots__ = ("_streams", "counter", "epoch", "last", "prefix", "registry", "wake")

    def __init__(self, prefix: bytes, instance: str) -> None:
        self.prefix = prefix
        self.counter = prefix + b"seq"
        self.epoch = prefix + b"epoch"
        self.registry = prefix + b"channels"
        self.last = prefix + b"last"
        self.wake = prefix + b"wake:" + instance.encode()
        self._streams: dict[str, bytes] = {}

    @property
    def channel_offset(self) -> int:
        """Where the channel name starts in a stream key, counted from 1 (as Lua does)."""
        return len(self.prefix) + len(b"ch:") + 1

    def stream(self, channel: str) -> bytes:
        """The key of ``channel``'s stream."""
        key = self._streams.get(channel)
        if key is None:
            key = self.prefix + b"ch:" + channel.encode()
            if len(self._streams) < _CACHED:
                self._streams[channel] = key
        return key
