"""RedisPresence on a real Redis: the contract, one view, expiry and coming back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
import redis

from _redis import redis_server, redis_url, unique_prefix
from sse_channels import ChannelStore, Presence, PresenceBackend, PresenceView
from sse_channels.backends.redis import RedisBackend, RedisPresence
from sse_channels.testing.presence_contract import (
    NetworkedPresenceContract,
    PresenceFactory,
    StoreBackendFactory,
    follow_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["redis_server", "redis_url"]  # fixtures, re-exported

pytestmark = pytest.mark.anyio

TTL = 1.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    admin = redis.Redis.from_url(redis_url)
    keys = list(admin.scan_iter(match=f"{prefix}*"))
    if keys:
        admin.delete(*keys)
    admin.close()


class TestRedisPresenceContract(NetworkedPresenceContract):
    """The presence contract, with two processes sharing one Redis and prefix."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def make_presence(self, redis_url: str, prefix: str) -> PresenceFactory:
        return lambda: RedisPresence(redis_url, prefix=prefix + "presence:", ttl=TTL)

    @pytest.fixture
    def make_store_backend(self, redis_url: str, prefix: str) -> StoreBackendFactory:
        return lambda: RedisBackend(redis_url, prefix=prefix)

    @pytest.fixture
    def expiry(self) -> float:
        return RedisPresence(ttl=TTL).expiry


def test_redis_presence_satisfies_the_protocol_and_checks_its_options() -> None:
    assert isinstance(RedisPresence(), PresenceBackend)
    assert RedisPresence(ttl=3).expiry == pytest.approx(4.0)
    for options in ({"ttl": 0}, {"ttl": 1, "interval": 1}, {"ttl": float("inf")}):
        with pytest.raises(ValueError):
            RedisPresence(**options)
    with pytest.raises(TypeError):
        RedisPresence("")


async def test_redis_presence_process_swept_while_cut_off_registers_again_once(
    redis_url: str, prefix: str
) -> None:
    admin = redis.Redis.from_url(redis_url)
    store = ChannelStore(RedisBackend(redis_url, prefix=prefix))
    backend = RedisPresence(redis_url, prefix=prefix + "presence:", ttl=30, interval=1.0)
    other_store = ChannelStore(RedisBackend(redis_url, prefix=prefix))
    sweeper = RedisPresence(redis_url, prefix=prefix + "presence:", ttl=30, interval=0.05)
    async with (
        store,
        Presence(store, backend) as presence,
        other_store,
        Presence(other_store, sweeper),
        store.subscribe("presence:room") as feed,
    ):
        view = await follow_until(feed, PresenceView(), lambda v: True)
        tabs = [presence.join("room", "alice"), presence.join("room", "alice")]
        bob = presence.join("room", "bob")
        await follow_until(feed, view, lambda v: set(v.members) == {"alice", "bob"})
        # Right after a heartbeat, as if the next ones had not reached Redis for longer than
        # ttl: the other process sweeps it.
        beats = backend.statistics()["heartbeats"]
        with anyio.fail_after(5):
            while backend.statistics()["heartbeats"] == beats:
                await anyio.sleep(0.01)
        admin.zadd(f"{prefix}presence:procs", {backend.process: 0})
        await follow_until(feed, view, lambda v: not v.members)
        assert sweeper.statistics()["expired_members"] == 2
        # Its next heartbeat finds it was swept, and joins its members again.
        await follow_until(feed, view, lambda v: set(v.members) == {"alice", "bob"})
        assert backend.statistics()["registered_again"] == 3
        members = await presence.members("room")
        assert {m: len(metas) for m, metas in members.items()} == {"alice": 2, "bob": 1}
        assert admin.hgetall(f"{prefix}presence:n:room") == {b"alice": b"2", b"bob": b"1"}
        # Beats go on, with no duplicate.
        await anyio.sleep(1.2)
        assert admin.hlen(f"{prefix}presence:c:room") == 3
        assert backend.statistics()["registered_again"] == 3
        for tab in (*tabs, bob):
            tab.leave()
        await follow_until(feed, view, lambda v: not v.members)
    left = [k for k in admin.scan_iter(match=f"{prefix}presence:*") if b"swept:" not in k]
    assert left == []
    admin.close()
