"""RedisPresence: one presence view for every process, with a heartbeat and an expiry.

Every change is one run of ``lua/presence.lua`` (its header draws the keys), so the
decision "first connection of this member" or "last one" is atomic across processes.
Each process keeps itself listed with a heartbeat every ``interval`` seconds, and sweeps:
the connections of a process whose heartbeat is older than ``ttl`` are removed, and their
members' leaves announced by the process that found them. A process that finds it was
swept (it was cut off for longer than ``ttl``) registers its live connections again; a
connection already registered is not added twice.

Imports redis-py, anyio, ``sse_channels._presence`` and ``_scripts`` (to load the file).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import TYPE_CHECKING, Any, final

import anyio
import redis.asyncio as aioredis

from ..._presence import PresenceChange
from ._scripts import load

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from redis.asyncio.client import Redis
    from redis.commands.core import AsyncScript

    from ..._presence import Announce

__all__ = ["RedisPresence"]

#: Expired processes one sweep removes (the rest wait for the next sweep).
_SWEEP_LIMIT = 16


@final
class RedisPresence:
    """Presence shared through Redis by every process: give it to ``Presence``.

    ::

        presence = Presence(store, RedisPresence("redis://localhost:6379/0", ttl=15))

    Members of a process that dies without cleaning up (killed, its host gone) leave
    within ``ttl + interval`` seconds, announced by another process, as long as one runs.
    A process cut off from Redis for longer than ``ttl`` has its members leave the same way,
    and joins them again (without duplicates) when it is back. redis-py's client is
    asyncio-only: on trio, starting it raises ``RuntimeError``.

    Args:
        url: the Redis URL.
        prefix: start of every key; give every process of one deployment the same one.
        ttl: seconds after a process's last heartbeat before its members are expired.
        interval: seconds between heartbeats (and sweeps); default ``ttl / 3``. Must be
            shorter than ``ttl``.

    Raises:
        ValueError, TypeError: a bad argument.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "sse:presence:",
        ttl: float = 15.0,
        interval: float | None = None,
    ) -> None:
        if type(url) is not str or not url:
            raise TypeError("url must be a non-empty str")
        if type(prefix) is not str or "\n" in prefix:
            raise TypeError("prefix must be a str without line breaks")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf:
            raise ValueError(f"ttl must be positive seconds, not {ttl!r}")
        beat = ttl / 3 if interval is None else interval
        if isinstance(beat, bool) or not isinstance(beat, (int, float)) or not 0 < beat < ttl:
            raise ValueError(f"interval must be positive seconds below ttl, not {interval!r}")
        self._url = url
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl * 1000))
        self._interval = float(beat)
        #: This process in Redis: its connections are ``<process>:<n>``.
        self.process = secrets.token_hex(6)
        self._client: Redis | None = None
        self._script: AsyncScript | None = None
        self._announce: Announce | None = None
        #: (channel, connection) -> (member, meta) of what this process has added.
        self._local: dict[tuple[str, str], tuple[str, str]] = {}
        self._beats = 0
        self._beating: anyio.CancelScope | None = None
        self._expired = 0
        self._registered_again = 0
        self._errors = 0
        self._last_error: str | None = None

    @property
    def expiry(self) -> float:
        """The bound, in seconds, within which a stopped process's members leave."""
        return self._ttl_ms / 1000 + self._interval

    def attach(self, announce: Announce) -> None:
        self._announce = announce

    async def start(self, task_group: TaskGroup) -> None:
        """Connect, beat once, and run the heartbeat and sweep in ``task_group``.

        Raises:
            RuntimeError: not on asyncio.
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("RedisPresence runs on asyncio only (redis-py's client)") from None
        client = aioredis.Redis.from_url(self._url)
        self._client = client
        self._script = client.register_script(load("presence"))
        await self._beat()
        task_group.start_soon(self._beat_forever)

    async def _run(self, *args: str | int) -> Any:
        assert self._script is not None, "start() first"
        return await self._script(args=[args[0], self._prefix, *args[1:]])

    def _connection(self, connection: str) -> str:
        return f"{self.process}:{connection}"

    async def add(
        self, channel: str, connection: str, member: str, meta: str
    ) -> PresenceChange | None:
        self._local[channel, connection] = (member, meta)
        name = self._connection(connection)
        version = await self._run("add", self.process, channel, name, member, meta, self._ttl_ms)
        if not version:
            return None
        return PresenceChange(channel, member, int(version), True, meta)

    async def remove(self, channel: str, connection: str) -> PresenceChange | None:
        self._local.pop((channel, connection), None)
        if not self._local:
            self._local = {}  # a dict never shrinks: after a crowd, let it go
        found = await self._run("remove", self.process, channel, self._connection(connection))
        if not found or not found[1]:
            return None
        return PresenceChange(channel, found[0].decode(), int(found[1]), False)

    async def snapshot(self, channel: str) -> tuple[int, dict[str, tuple[int, list[str]]]]:
        version, connections, joined = await self._run("snapshot", channel)
        versions = {joined[i].decode(): int(joined[i + 1]) for i in range(0, len(joined), 2)}
        members: dict[str, tuple[int, list[str]]] = {}
        for i in range(1, len(connections), 2):
            member, _, meta = connections[i].decode().partition("\n")
            entry = members.get(member)
            if entry is None:
                entry = members[member] = (versions.get(member, 0), [])
            entry[1].append(meta)
        return int(version), members

    async def count(self, channel: str) -> int:
        assert self._client is not None, "start() first"
        return int(await self._client.hlen(f"{self._prefix}n:{channel}"))

    async def _beat(self) -> None:
        swept = await self._run("beat", self.process, self._ttl_ms)
        self._beats += 1
        if swept:
            await self._register_again()
        leaves = await self._run("sweep", _SWEEP_LIMIT)
        for i in range(0, len(leaves), 3):
            self._expired += 1
            channel, member = leaves[i].decode(), leaves[i + 1].decode()
            self._tell(PresenceChange(channel, member, int(leaves[i + 2]), False))

    async def _register_again(self) -> None:
        """Swept while cut off: add every live connection again (announcing the joins)."""
        for (channel, connection), (member, meta) in list(self._local.items()):
            if (channel, connection) not in self._local:
                continue  # removed meanwhile
            name = self._connection(connection)
            version = await self._run(
                "add", self.process, channel, name, member, meta, self._ttl_ms
            )
            self._registered_again += 1
            if version:
                self._tell(PresenceChange(channel, member, int(version), True, meta))

    def _tell(self, change: PresenceChange) -> None:
        if self._announce is not None:
            self._announce(change)

    async def _beat_forever(self) -> None:
        with anyio.CancelScope() as self._beating:
            await self._beat_until_cancelled()

    async def _beat_until_cancelled(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            try:
                await self._beat()
            except Exception as exc:  # Redis unreachable: beat again next time
                self._errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"

    def statistics(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "connections": len(self._local),
            "heartbeats": self._beats,
            "expired_members": self._expired,
            "registered_again": self._registered_again,
            "errors": self._errors,
            "last_error": self._last_error,
        }

    async def aclose(self, *, clean: bool = True) -> None:
        if self._beating is not None:
            self._beating.cancel()
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if clean and not self._local:
                # Everything was removed and announced: unlist the process at once.
                await client.zrem(f"{self._prefix}procs", self.process)
                await client.delete(f"{self._prefix}proc:{self.process}")
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
        finally:
            await client.aclose()

    def __repr__(self) -> str:
        return f"<RedisPresence process={self.process} ttl={self._ttl_ms / 1000}s>"
