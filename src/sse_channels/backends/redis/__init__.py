"""RedisBackend: channels shared by many processes and hosts through Redis Streams.

Install with ``pip install "sse-channels[redis]"``. This package is the only one that
imports redis-py, and ``sse_channels.backends`` does not import it: it loads when you ask
for it.

One Lua script per send increments a store-wide counter and adds the entry with id
``<n>-0``, so the ids of all streams share one order (multi-channel resume needs nothing
more) and the public event id is ``<label>-<n>``. Each entry records the previous entry of
its stream: a reader (or a history read) whose next entry points further back than where
it stands knows that trimming removed events in between, and reports a gap instead of a
silent hole. The label changes when Redis loses the counter (a restart without
persistence, a flush, a failover that rolled back): ids of the old label are then
unknown, and their subscribers get the gap signal.

Every process runs one reader task that multiplexes all watched channels in one blocking
``XREAD`` on its own connection, and sends everything else (events, history reads) over a
second connection that concurrent callers share: their requests are written together and
the replies matched in order. Two connections per process, however many subscribers.
redis-py's client is asyncio-only, so this backend runs on asyncio; on trio, starting it
raises ``RuntimeError``.

The modules, each with one job (docs/design.md has the map of what each may import):
``_backend`` (RedisBackend: lifecycle, sending, watching, reading, history), ``_keys``,
``_scripts`` and ``lua/``, ``_link``, ``_resp``, ``_epoch``, ``_entry``, ``_plan``,
``_retry``, ``_health``; and ``_presence`` (RedisPresence, with ``lua/presence.lua``).
"""

from __future__ import annotations

from ._backend import RedisBackend
from ._presence import RedisPresence

__all__ = ["RedisBackend", "RedisPresence"]

# Reprs and docs name them where users import them.
RedisBackend.__module__ = RedisPresence.__module__ = __name__
