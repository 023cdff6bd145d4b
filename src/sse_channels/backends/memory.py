"""MemoryBackend: one process, nothing to install; the reference implementation."""

from __future__ import annotations

import logging
import secrets
import string
from typing import TYPE_CHECKING, Any, final

from .._workers import warn_if_one_of_several_workers

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .._event import Event
    from ._base import Deliver

__all__ = ["MemoryBackend"]

_ALPHABET = string.digits + string.ascii_lowercase

logger = logging.getLogger("sse_channels.backends.memory")


@final
class MemoryBackend:
    """Keeps events in this process only. Ids look like ``k3x9-42``.

    The prefix is random per backend instance (an *epoch*), so after a restart an id from
    the previous process is recognised as unknown and its subscriber gets a gap signal
    instead of silently matching a new event that reuses the number.
    """

    def __init__(self) -> None:
        self._epoch = "".join(secrets.choice(_ALPHABET) for _ in range(4))
        self._prefix = self._epoch + "-"
        self._key = 0
        self._deliver: Deliver | None = None

    def attach(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def start(self, task_group: TaskGroup | None = None) -> None:
        # Under ``--workers N`` each worker has its own memory log: say so, once.
        warn_if_one_of_several_workers(logger, "MemoryBackend")

    async def publish(self, channel: str, event: Event) -> Event:
        return self._publish_now(channel, event)

    def _publish_now(self, channel: str, event: Event) -> Event:
        assert self._deliver is not None, "attach() first"
        self._key = key = self._key + 1
        if event.id is None:
            event = event.with_id(f"{self._prefix}{key}")
        self._deliver(channel, key, event)
        return event

    def publish_sync(self, channel: str, event: Event) -> Event | None:
        return None  # the store hands the call to its event loop instead

    def format_id(self, key: int) -> str:
        return f"{self._prefix}{key}"

    def parse_id(self, event_id: str) -> int | None:
        if event_id.startswith(self._prefix):
            digits = event_id[len(self._prefix) :]
            if digits.isascii() and digits.isdigit():
                key = int(digits)
                if key <= self._key:
                    return key
        return None

    def latest_key(self) -> int:
        return self._key

    async def history(
        self, channel: str, after: int, through: int
    ) -> tuple[int, list[tuple[int, Event]]] | None:
        return None  # the store's own log is all there is

    def watch(self, channel: str) -> int:
        return 0  # every event of this process reaches the local log

    def unwatch(self, channel: str) -> None:
        return None

    def statistics(self) -> dict[str, Any]:
        return {"backend": "memory", "connected": True}

    async def aclose(self) -> None:
        return None
