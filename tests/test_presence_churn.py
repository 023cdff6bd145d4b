"""10,000 members join and leave on Redis and PostgreSQL: nothing is left behind.

Counted in the storage (keys, rows) and in this process (tracemalloc, after a warm-up
churn, so that caches that fill once are not counted). The announcements go to an
in-memory store: what is under test is the presence backend's state, and a networked store
would only make 44,000 changes slower. The in-memory version of this test is in
``test_presence.py``.
"""

from __future__ import annotations

import gc
import tracemalloc
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import redis

from _postgres import connect, postgres_dsn, postgres_server, unique_schema
from _redis import redis_server, redis_url, unique_prefix
from sse_channels import ChannelStore, Presence
from sse_channels.backends.postgres import PostgresPresence
from sse_channels.backends.redis import RedisPresence

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["postgres_dsn", "postgres_server", "redis_server", "redis_url"]  # fixtures

pytestmark = pytest.mark.anyio

MEMBERS = 10_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def churn(presence: Presence, n: int) -> None:
    sessions = [presence.join("room", f"user-{i}", {"n": i}) for i in range(n)]
    await presence.flush()
    assert await presence.count("room") == n
    for session in sessions:
        session.leave()
    await presence.flush()
    assert await presence.count("room") == 0


async def measured(presence: Presence) -> int:
    """Bytes this process holds more after a churn of MEMBERS than before it."""
    # Traced from the warm-up on, so that the events the churn pushes out of the store's
    # log of presence:room (full after the warm-up) count as freed.
    tracemalloc.start()
    try:
        await churn(presence, 1000)  # warm-up
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        await churn(presence, MEMBERS)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@asynccontextmanager
async def running(store: ChannelStore, presence: Presence) -> AsyncIterator[Presence]:
    async with store, presence:
        yield presence


async def test_presence_churn_of_10000_on_redis_leaves_no_key_and_no_memory(
    redis_url: str,
) -> None:
    prefix = unique_prefix()
    admin = redis.Redis.from_url(redis_url)

    def redis_bytes() -> int:
        """What the presence's keys take in Redis (MEMORY USAGE; the server is shared)."""
        keys = admin.scan_iter(match=f"{prefix}presence:*")
        return sum(int(admin.memory_usage(key) or 0) for key in keys)

    try:
        store = ChannelStore(history=100)
        backend = RedisPresence(redis_url, prefix=prefix + "presence:", ttl=30)
        async with running(store, Presence(store, backend)) as presence:
            sessions = [presence.join("room", f"held-{i}") for i in range(MEMBERS)]
            await presence.flush()
            held = redis_bytes()  # what 10,000 members take
            for session in sessions:
                session.leave()
            await presence.flush()
            left = await measured(presence)
            keys = sorted(k.decode() for k in admin.scan_iter(match=f"{prefix}presence:*"))
            # What stays while the process runs: its own heartbeat entry, nothing per member.
            assert keys == [f"{prefix}presence:procs"]
            assert admin.zcard(f"{prefix}presence:procs") == 1
            after = redis_bytes()
            assert presence.statistics()["sessions"] == 0
            assert backend.statistics()["connections"] == 0
        # 10,000 members are about 3 MB here; what is left is noise.
        assert left < 256 * 1024, left
        assert held > 1_000_000, held
        assert after < 1024, (after, held)
        assert list(admin.scan_iter(match=f"{prefix}presence:*")) == []
    finally:
        keys = list(admin.scan_iter(match=f"{prefix}*"))
        if keys:
            admin.delete(*keys)
        admin.close()


async def test_presence_churn_of_10000_on_postgres_leaves_no_row_and_no_memory(
    postgres_dsn: str,
) -> None:
    schema = unique_schema()
    store = ChannelStore(history=100)
    backend = PostgresPresence(postgres_dsn, schema=schema, ttl=60)

    def rows(table: str) -> int:
        with connect(postgres_dsn) as admin:
            (found,) = admin.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()
        return int(found)

    async with running(store, Presence(store, backend)) as presence:
        left = await measured(presence)
        assert rows("presence_connections") == rows("presence_members") == 0
        assert rows("presence_versions") <= 1  # the channel's last version, one row
        assert rows("presence_processes") == 1  # its own heartbeat
        assert backend.statistics()["connections"] == 0
    assert left < 256 * 1024, left
    assert rows("presence_processes") == 0
