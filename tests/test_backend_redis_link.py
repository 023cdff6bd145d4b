"""The Redis backend's shared link against a real Redis: pipelining, deadlines, reconnection.

The deadline tests pause the tests' own redis-server (``CLIENT PAUSE``): a Redis that
holds its connections open and answers nothing, as a hung or overloaded server does.
"""

from __future__ import annotations

import inspect

import anyio
import pytest
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from _redis import RedisServer, redis_server, redis_url, restartable_redis
from sse_channels.backends.redis._link import Link, open_pool, redact
from sse_channels.backends.redis._resp import pack

__all__ = ["redis_server", "redis_url", "restartable_redis"]  # fixtures, re-exported

pytestmark = pytest.mark.anyio

PING = pack((b"PING",))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def paused_redis(restartable_redis: RedisServer) -> RedisServer:
    if not restartable_redis.private:
        pytest.skip("pausing a shared Redis would stall its other clients")
    return restartable_redis


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(
    redis_url: str,
) -> None:
    link = Link(open_pool(redis_url, "sse-link-test"))
    replies: dict[int, object] = {}

    async def echo(i: int) -> None:
        replies[i] = await link.call(pack((b"ECHO", b"%d" % i)))

    async with anyio.create_task_group() as group:
        for i in range(50):
            group.start_soon(echo, i)
    assert replies == {i: b"%d" % i for i in range(50)}
    with redis.Redis.from_url(redis_url) as admin:
        names = [c["name"] for c in admin.client_list()]
    assert names.count("sse-link-test") == 1
    await link.aclose()


async def test_refused_command_fails_alone_and_the_replies_after_it_stay_aligned(
    redis_url: str,
) -> None:
    link = Link(open_pool(redis_url, "sse-link-test"))
    results: dict[str, object] = {}

    async def call(name: str, command: bytes) -> None:
        try:
            results[name] = await link.call(command)
        except ResponseError as exc:
            results[name] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(call, "before", pack((b"ECHO", b"before")))
        group.start_soon(call, "refused", pack((b"NO-SUCH-COMMAND",)))
        group.start_soon(call, "after", pack((b"ECHO", b"after")))
    assert results["before"] == b"before"
    assert isinstance(results["refused"], ResponseError)
    assert results["after"] == b"after"
    assert link.connected
    await link.aclose()


@pytest.mark.parametrize("guarded", [True, False], ids=["watchdog", "cancel-scope"])
async def test_calls_redis_does_not_answer_in_time_fail_and_the_next_call_reconnects(
    paused_redis: RedisServer, guarded: bool
) -> None:
    link = Link(open_pool(paused_redis.url, "sse-link-test"), timeout=0.3)
    failures: list[BaseException] = []

    async def call() -> None:
        try:
            await link.call(PING)
        except RedisTimeoutError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as group:
        if guarded:
            group.start_soon(link.guard)
        assert await link.call(PING) == b"PONG"
        with paused_redis.client() as admin:
            admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        with anyio.fail_after(10):  # without a deadline, both would get PONG in 3 s
            async with anyio.create_task_group() as calls:
                calls.start_soon(call)  # the one that writes the batch
                calls.start_soon(call)  # queued behind it
        assert [str(f) for f in failures] == ["no reply from Redis within 0.3 s"] * 2
        assert not bool(link.connected)  # (a call: mypy keeps the attribute unnarrowed)
        with anyio.fail_after(10):
            while True:  # the next call connects again (once the pause is over)
                try:
                    reply = await link.call(PING)
                    break
                except RedisTimeoutError:
                    continue
        assert reply == b"PONG"
        assert link.connected
        group.cancel_scope.cancel()
    await link.aclose()


def test_redis_py_still_offers_the_connection_api_the_link_uses() -> None:
    # The link uses only these public names (redis-py 5.0 to 8.2 have them): if a release
    # renames or drops one, this says which, instead of a reader failing at run time.
    assert callable(redis.asyncio.ConnectionPool.from_url)
    assert callable(redis.asyncio.ConnectionPool.make_connection)
    assert "check_health" in inspect.signature(AbstractConnection.send_packed_command).parameters
    assert "nowait" in inspect.signature(AbstractConnection.disconnect).parameters
    assert inspect.iscoroutinefunction(AbstractConnection.read_response)
    assert inspect.iscoroutinefunction(AbstractConnection.connect)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://user:pw@host:1/2", "redis://user:***@host:1/2"),
        ("rediss://:pw@host", "rediss://:***@host"),
        ("redis://host/0?password=pw&db=1", "redis://host/0?password=***&db=1"),
        ("unix:///run/redis.sock?password=pw", "unix:///run/redis.sock?password=***"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("redis://host:notaport", "redis://host:notaport"),
        ("redis://[::1", "<unparsable URL>"),
    ],
)
def test_redact_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact(url) == shown
