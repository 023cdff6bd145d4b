"""RedisBackend against a real Redis (see ``_redis.py``): delivery, resume, faults, health.

Two stores with two backends in one process stand for two server processes here: they share
nothing but Redis. Separate processes are in ``test_redis_multiprocess.py``. redis-py is
asyncio-only, so these tests run on asyncio (trio gets a clear error, tested below).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import redis

from _redis import RedisServer, redis_server, redis_url, restartable_redis, unique_prefix
from sse_channels import GAP_EVENT, BackendError, ChannelStore, Event, Subscription
from sse_channels.asgi import SSEApp
from sse_channels.backends import Backend
from sse_channels.backends.redis import RedisBackend
from sse_channels.backends.redis._entry import encode
from sse_channels.backends.redis._epoch import label_of
from sse_channels.backends.redis._keys import Keys
from sse_channels.backends.redis._link import Link, open_pool
from sse_channels.backends.redis._scripts import Scripts, run
from sse_channels.testing import connect_sse
from sse_channels.testing.backend_contract import BackendFactory, NetworkedBackendContract

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["redis_server", "redis_url", "restartable_redis"]  # fixtures, re-exported

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


_BACKEND_OPTIONS = ("maxlen", "ttl", "poll_interval", "client_name")


class Stores:
    """Starts stores on one Redis and prefix, each with its own backend; closes them all."""

    def __init__(self, url: str, prefix: str, stack: AsyncExitStack) -> None:
        self.url, self.prefix, self._stack = url, prefix, stack

    async def start(self, **options: Any) -> ChannelStore:
        backend_options = {k: options.pop(k) for k in _BACKEND_OPTIONS if k in options}
        backend = RedisBackend(self.url, prefix=self.prefix, **backend_options)
        return await self._stack.enter_async_context(ChannelStore(backend=backend, **options))


@pytest.fixture
async def stores(redis_url: str, prefix: str) -> AsyncIterator[Stores]:
    async with AsyncExitStack() as stack:
        yield Stores(redis_url, prefix, stack)


async def read(subscription: Subscription, n: int, timeout: float = 5.0) -> list[Event]:
    events: list[Event] = []
    with anyio.fail_after(timeout):
        while len(events) < n:
            events.extend(await subscription.receive_batch())
    return events


async def read_until(subscription: Subscription, data: str, timeout: float = 5.0) -> list[Event]:
    events: list[Event] = []
    with anyio.fail_after(timeout):
        while not events or events[-1].data != data:
            events.extend(await subscription.receive_batch())
    return events


async def nothing_more(subscription: Subscription, wait: float = 0.2) -> None:
    with anyio.move_on_after(wait):
        batch = await subscription.receive_batch()
        raise AssertionError(f"unexpected events: {batch}")


def n_of(event: Event) -> int:
    assert event.id is not None
    return int(event.id.rpartition("-")[2])


# -- the backend contract, unchanged ------------------------------------------------------


class TestRedisBackendContract(NetworkedBackendContract):
    """The contract every backend passes, on a real Redis (one key prefix per test)."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def make_backend(self, redis_url: str, prefix: str) -> BackendFactory:
        # Backends made by one test share the prefix: two processes of one deployment.
        # The streams keep what the store keeps, as a deployment would configure it.
        return lambda history: RedisBackend(redis_url, prefix=prefix, maxlen=history)


# -- delivery ------------------------------------------------------------------------------


def test_redis_backend_satisfies_the_backend_protocol() -> None:
    assert isinstance(RedisBackend(), Backend)


async def test_event_sent_on_one_store_reaches_subscribers_of_both(stores: Stores) -> None:
    a, b = await stores.start(), await stores.start()
    sub_a, sub_b = a.subscribe("news"), b.subscribe("news")
    sent = [await a.send("news", {"n": 1}), await b.send("news", "two", event="update")]
    for sub in (sub_a, sub_b):
        got = await read(sub, 2)
        assert [(e.data, e.event, e.id) for e in got] == [(e.data, e.event, e.id) for e in sent]
        assert got[1].encoded == b"event: update\nid: " + sent[1].id.encode() + b"\ndata: two\n\n"  # type: ignore[union-attr]
        await nothing_more(sub)
        sub.close()


async def test_ids_share_one_order_across_channels(stores: Stores) -> None:
    a, b = await stores.start(), await stores.start()
    sub = b.subscribe("x", "y", "z")
    sent = []
    for i in range(30):
        store = (a, b)[i % 2]
        sent.append(await store.send("xyz"[i % 3], str(i)))
    got = await read(sub, 30)
    assert [e.data for e in got] == [str(i) for i in range(30)]
    assert [n_of(e) for e in got] == sorted(n_of(e) for e in sent)
    label = {e.id.partition("-")[0] for e in got}  # type: ignore[union-attr]
    assert len(label) == 1
    assert label.pop().isalnum()
    sub.close()


async def test_channel_names_keep_their_case_and_characters(stores: Stores) -> None:
    a = await stores.start()
    lower, upper, odd = a.subscribe("news"), a.subscribe("NEWS"), a.subscribe("ünï côdé:{x}")
    await a.send("NEWS", "upper")
    await a.send("news", "lower")
    await a.send("ünï côdé:{x}", "odd")
    assert [e.data for e in await read(lower, 1)] == ["lower"]
    assert [e.data for e in await read(upper, 1)] == ["upper"]
    assert [e.data for e in await read(odd, 1)] == ["odd"]
    for sub in (lower, upper, odd):
        await nothing_more(sub, 0.05)
        sub.close()


async def test_custom_ids_and_retry_survive_the_trip(stores: Stores) -> None:
    a, b = await stores.start(), await stores.start()
    sub = b.subscribe("c")
    await a.send("c", "x\ny", id="order-17", retry=1500, event="e")
    (event,) = await read(sub, 1)
    assert (event.data, event.id, event.retry, event.event) == ("x\ny", "order-17", 1500, "e")
    assert event.encoded == b"event: e\nid: order-17\nretry: 1500\ndata: x\ndata: y\n\n"
    sub.close()


async def test_subscribing_while_the_reader_is_blocked_loses_nothing(stores: Stores) -> None:
    receiver = await stores.start(history=5000)
    sender = await stores.start()
    subs: list[Subscription] = []
    async with anyio.create_task_group() as group:

        async def send_forever() -> None:
            sequence = [0] * 20
            for i in itertools.cycle(range(20)):
                await sender.send(f"c{i}", str(sequence[i]))
                sequence[i] += 1

        group.start_soon(send_forever)
        for i in range(20):  # each new channel re-plans the reader's blocking XREAD
            await anyio.sleep(0.01)
            subs.append(receiver.subscribe(f"c{i}"))
        group.cancel_scope.cancel()
    for i in range(20):
        await sender.send(f"c{i}", "end")
    for sub in subs:
        got = await read_until(sub, "end")
        numbers = [int(e.data) for e in got[:-1]]
        # From its first event on, every event of the channel arrives once, in order.
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) if numbers else True
        sub.close()


async def test_unsubscribed_channel_is_read_again_from_its_new_subscription(
    stores: Stores,
) -> None:
    a, b = await stores.start(), await stores.start(poll_interval=0.1)
    first = b.subscribe("c")
    await a.send("c", "1")
    assert [e.data for e in await read(first, 1)] == ["1"]
    first.close()
    assert b.statistics().backend["streams"] == 0
    await a.send("c", "2")
    await anyio.sleep(0.3)  # b's reader refreshes the counter every poll_interval
    second = b.subscribe("c")
    await a.send("c", "3")
    assert [e.data for e in await read(second, 1)] == ["3"]
    await nothing_more(second)
    second.close()


async def test_new_subscriber_may_see_events_sent_just_before_but_never_older(
    stores: Stores,
) -> None:
    a, b = await stores.start(), await stores.start(poll_interval=5)
    first = b.subscribe("c")
    await a.send("c", "1")
    assert [e.data for e in await read(first, 1)] == ["1"]
    first.close()
    await a.send("c", "2")  # b has not heard of it: it may count as sent "just before"
    second = b.subscribe("c")
    await a.send("c", "3")
    got = [e.data for e in await read_until(second, "3")]
    assert got in (["2", "3"], ["3"])
    second.close()


async def test_pattern_sees_existing_and_new_channels_of_other_processes(
    stores: Stores,
) -> None:
    a, b = await stores.start(), await stores.start(poll_interval=0.1)
    await a.send("room:1", "before")  # exists in Redis, unknown to b
    await anyio.sleep(0.3)  # b's reader refreshes the counter every poll_interval
    sub = b.subscribe("room:*")
    await anyio.sleep(0.2)  # b's reader loads the channel registry
    await a.send("room:1", "one")
    await a.send("room:2", "two")  # a channel created after the subscription
    await a.send("hall", "no")
    got = await read(sub, 2)
    assert [(e.channel, e.data) for e in got] == [("room:1", "one"), ("room:2", "two")]
    await nothing_more(sub)
    sub.close()
    assert b.statistics().backend["patterns"] == 0


async def test_pattern_watched_again_reads_channels_created_meanwhile_from_then_on(
    stores: Stores,
) -> None:
    a, b = await stores.start(), await stores.start(poll_interval=0.1)
    first = b.subscribe("p:*")
    await anyio.sleep(0.2)  # b's reader loads the channel registry
    await a.send("p:1", "one")
    assert [e.data for e in await read(first, 1)] == ["one"]
    first.close()
    await a.send("p:2", "old")  # a channel created while nobody here matched it
    await anyio.sleep(0.3)  # b's reader refreshes the counter every poll_interval
    again = b.subscribe("p:*")
    await anyio.sleep(0.2)
    await a.send("p:2", "new")
    await a.send("p:3", "three")
    got = await read(again, 2)
    assert [(e.channel, e.data) for e in got] == [("p:2", "new"), ("p:3", "three")]
    await nothing_more(again)
    again.close()


async def test_listener_runs_in_the_receiving_process(stores: Stores) -> None:
    a, b = await stores.start(), await stores.start()
    seen: list[str] = []
    done = anyio.Event()

    def listener(event: Event) -> None:
        seen.append(event.data)
        if event.data == "boom":
            raise RuntimeError("listener failed")
        if event.data == "after":
            done.set()

    unsubscribe = b.listen("l", listener)
    await a.send("l", "boom")  # logged by the reader, which goes on
    await a.send("l", "after")
    with anyio.fail_after(5):
        await done.wait()
    assert seen == ["boom", "after"]
    unsubscribe()


# -- resume --------------------------------------------------------------------------------


async def test_resume_on_another_store_gets_exactly_the_missed_events(
    stores: Stores,
) -> None:
    a, b = await stores.start(), await stores.start()
    sub = a.subscribe("feed")
    for i in range(5):
        await a.send("feed", str(i))
    got = await read(sub, 5)
    sub.close()
    for i in range(5, 12):
        await (a, b)[i % 2].send("feed", str(i))
    resumed = b.subscribe("feed", last_event_id=got[-1].id)  # b never watched "feed"
    await a.send("feed", "12")
    missed = await read(resumed, 8)
    assert [e.data for e in missed] == [str(i) for i in range(5, 13)]
    assert b.statistics().replayed == 7
    await nothing_more(resumed)
    resumed.close()


async def test_resume_from_an_id_this_process_has_not_read_yet_skips_it(
    stores: Stores, redis_url: str, prefix: str
) -> None:
    a = await stores.start()
    b = await stores.start(history=100)
    watcher = b.subscribe("feed")  # b reads "feed"; its reader may lag behind a's sends
    sent = [await a.send("feed", str(i)) for i in range(3)]
    # Pretend b's reader has not delivered these yet: the id is newer than b's log.
    resumed = b.subscribe("feed", last_event_id=sent[1].id)
    assert [e.data for e in await read(resumed, 1)] == ["2"]
    await a.send("feed", "3")
    assert [e.data for e in await read(resumed, 1)] == ["3"]
    await read(watcher, 4)
    for sub in (watcher, resumed):
        sub.close()


async def test_multi_channel_resume_replays_each_channel_after_the_one_id(
    stores: Stores,
) -> None:
    a, b = await stores.start(), await stores.start()
    sub = a.subscribe("x", "y")
    await a.send("x", "x0")
    await a.send("y", "y0")
    last = (await read(sub, 2))[-1].id
    sub.close()
    for name in ("y1", "x1", "y2"):
        await a.send(name[0], name)
    resumed = b.subscribe("x", "y", last_event_id=last)
    assert [e.data for e in await read(resumed, 3)] == ["y1", "x1", "y2"]  # in send order
    resumed.close()


async def test_multi_channel_resume_mixing_history_and_local_events_keeps_send_order(
    stores: Stores,
) -> None:
    # Regression: events this process held for one channel came after those fetched from
    # Redis for another, so a client that reconnected after a fetched one skipped them.
    a, b = await stores.start(), await stores.start()
    watcher = b.subscribe("x")  # b's log holds "x" from here on; "y" it never watched
    mark = await a.send("x", "x0")
    sent = [await a.send(name[0], name) for name in ("y1", "x1", "y2", "x2", "y3")]
    await read_until(watcher, "x2")
    resumed = b.subscribe("x", "y", last_event_id=mark.id)
    got = await read(resumed, 5)
    assert got == sent
    resumed.close()
    for index, event in enumerate(got):
        again = b.subscribe("x", "y", last_event_id=event.id)
        assert await read(again, len(got) - index - 1) == got[index + 1 :]
        await nothing_more(again, wait=0.05)
        again.close()
    watcher.close()


async def test_resume_whose_history_read_failed_replays_on_the_next_read(
    stores: Stores, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await stores.start()
    mark = await a.send("feed", "seen")
    missed = [await a.send("feed", str(i)) for i in range(3)]
    backend = RedisBackend(redis_url, prefix=prefix)
    real_history, failures = backend.history, [BackendError("cannot reach Redis (injected)")]

    async def history_failing_once(channel: str, after: int, through: int) -> Any:
        if failures:  # as when the connection drops during that read
            raise failures.pop()
        return await real_history(channel, after, through)

    monkeypatch.setattr(backend, "history", history_failing_once)
    async with ChannelStore(backend=backend) as b:
        resumed = b.subscribe("feed", last_event_id=mark.id)
        with pytest.raises(BackendError, match="injected"):
            await resumed.receive_batch()
        assert await read(resumed, 3) == missed  # not a silent jump to live
        resumed.close()


async def test_resume_older_than_the_stream_retains_gets_a_gap_then_the_retained_rest(
    stores: Stores,
) -> None:
    a = await stores.start(maxlen=50)  # Redis physically keeps whole blocks of ~100 entries
    b = await stores.start(maxlen=50, poll_interval=0.1)
    first = await a.send("t", "first")
    for i in range(400):
        await a.send("t", str(i))
    await anyio.sleep(0.3)  # b's reader refreshes the counter every poll_interval
    resumed = b.subscribe("t", last_event_id=first.id)
    got = await read_until(resumed, "399")
    assert got[0].event == GAP_EVENT
    assert json.loads(got[0].data) == {"reason": "expired", "channel": "t"}
    # Exactly the newest maxlen events follow (not what Redis happens to keep beyond that).
    assert [e.data for e in got[1:]] == [str(i) for i in range(350, 400)]
    await a.send("t", "live")
    assert [e.data for e in await read(resumed, 1)] == ["live"]
    resumed.close()


async def test_expired_stream_gives_a_gap_on_resume(stores: Stores) -> None:
    a = await stores.start(ttl=0.1, poll_interval=0.01)
    b = await stores.start(ttl=0.1, poll_interval=0.01)
    old = await a.send("brief", "old")
    await a.send("brief", "missed")
    await anyio.sleep(0.3)  # the stream expires
    resumed = b.subscribe("brief", last_event_id=old.id)
    gap = (await read(resumed, 1))[0]
    assert gap.event == GAP_EVENT
    assert json.loads(gap.data)["reason"] == "expired"
    resumed.close()


async def test_resume_across_an_expired_and_recreated_stream_gets_a_gap_not_a_hole(
    stores: Stores, redis_server: RedisServer
) -> None:
    a = await stores.start(ttl=0.1, poll_interval=0.01)
    old = await a.send("brief", "old")
    await a.send("brief", "missed")
    with redis_server.client() as admin, anyio.fail_after(5):
        while admin.exists(f"{stores.prefix}ch:brief"):  # the stream expires
            await anyio.sleep(0.02)
    after = await a.send("brief", "after")  # and is created again
    b = await stores.start(ttl=0.1, poll_interval=0.01)
    async with b.subscribe("brief", last_event_id=old.id) as resumed:
        gap, event = await read(resumed, 2)
    assert gap.event == GAP_EVENT
    assert json.loads(gap.data)["reason"] == "expired"
    assert event == after


async def test_live_reader_of_a_recreated_stream_gets_no_spurious_gap(stores: Stores) -> None:
    a = await stores.start(ttl=0.2, poll_interval=0.01)
    async with a.subscribe("brief") as live:
        await a.send("brief", "first")
        assert [e.data for e in await read(live, 1)] == ["first"]
        await anyio.sleep(0.4)  # the stream expires; the reader had read everything
        await a.send("brief", "second")
        assert [e.data for e in await read(live, 1)] == ["second"]


async def test_reader_that_falls_behind_the_trim_reports_a_gap(
    stores: Stores, redis_url: str, prefix: str
) -> None:
    b = await stores.start()
    sub = b.subscribe("burst")
    sender = RedisBackend(redis_url, prefix=prefix, maxlen=1)
    draft = Event("x", channel="burst")
    # The event loop is blocked while the burst goes in, so b's reader cannot keep up: by
    # the time it reads again, Redis has trimmed events it never saw.
    for _ in range(500):
        sender.publish_sync("burst", draft)
    last = sender.publish_sync("burst", Event("last", channel="burst"))
    await sender.aclose()
    assert last is not None
    got: list[Event] = []
    with anyio.fail_after(5):
        while not got or got[-1].data != "last":
            got += await sub.receive_batch()
    gaps = [e for e in got if e.event == GAP_EVENT]
    assert len(gaps) == 1
    assert json.loads(gaps[0].data)["reason"] == "lost"
    keys = [n_of(e) for e in got]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert b.statistics().backend["gaps"] == 1
    sub.close()


async def test_redis_restarted_empty_gives_gaps_to_live_and_resuming_subscribers(
    restartable_redis: RedisServer, prefix: str
) -> None:
    a = ChannelStore(backend=RedisBackend(restartable_redis.url, prefix=prefix))
    b = ChannelStore(backend=RedisBackend(restartable_redis.url, prefix=prefix))
    async with a, b:
        live = b.subscribe("r")
        old = await a.send("r", "before")
        assert [e.data for e in await read(live, 1)] == ["before"]
        restartable_redis.restart_empty(prefix)
        with anyio.fail_after(10):  # the reader reconnects and sees the new epoch
            while b.statistics().backend["epoch"] == old.id.partition("-")[0]:  # type: ignore[union-attr]
                await anyio.sleep(0.02)
        gap = (await read(live, 1))[0]
        assert gap.event == GAP_EVENT
        assert json.loads(gap.data)["reason"] == "lost"
        new = None
        with anyio.fail_after(10):  # a's connections were dropped too; its send retries
            new = await a.send("r", "after")
        assert new.id != old.id
        assert new.id.partition("-")[0] != old.id.partition("-")[0]  # type: ignore[union-attr]
        assert [e.data for e in await read(live, 1)] == ["after"]
        # b still holds the old event in its log: the gap follows it there.
        resumed = b.subscribe("r", last_event_id=old.id)
        got = await read(resumed, 2)
        assert [(e.event, e.data) for e in got] == [(GAP_EVENT, gap.data), (None, "after")]
        assert b.statistics().events_delivered == 3  # before, after, after: no gap signals
        # A process that never saw the old id cannot place it at all.
        fresh = ChannelStore(backend=RedisBackend(restartable_redis.url, prefix=prefix))
        async with fresh:
            resumed_fresh = fresh.subscribe("r", last_event_id=old.id)
            got = await read(resumed_fresh, 1)
            assert got[0].event == GAP_EVENT
            assert json.loads(got[0].data)["reason"] == "unknown_id"
            resumed_fresh.close()
        for sub in (live, resumed):
            sub.close()
        assert b.statistics().backend["reconnects"] >= 1


# -- faults --------------------------------------------------------------------------------


async def reader_ids(client: redis.Redis, name: str) -> list[int]:
    """The ids of the reader connections of backends whose client_name is ``name``."""
    with anyio.fail_after(5):
        while True:
            ids = [
                int(c["id"])
                for c in client.client_list()
                if c["name"].startswith(name + ":") and c["name"].endswith(":read")
            ]
            if ids:
                return ids
            await anyio.sleep(0.01)


async def test_10000_events_arrive_in_order_once_while_connections_are_killed(
    stores: Stores, redis_server: RedisServer
) -> None:
    total = 10_000
    # Redis keeps every event (maxlen): a reader slowed down by a busy machine must not find
    # its next events trimmed, which would rightly be a gap, not what is tested here.
    receiver = await stores.start(history=total, client_name="sse-kill-receiver")
    sender = await stores.start(maxlen=total, client_name="sse-kill-sender")
    subs = [receiver.subscribe("stream") for _ in range(3)]
    both = receiver.subscribe("stream", "other")
    kills = 0
    with redis_server.client() as admin:
        async with anyio.create_task_group() as group:

            async def consume(sub: Subscription, out: list[int]) -> None:
                while len(out) < total:
                    out.extend(int(e.data) for e in await sub.receive_batch())

            received: list[list[int]] = [[] for _ in range(4)]
            for sub, out in zip([*subs, both], received, strict=True):
                group.start_soon(consume, sub, out)
            for i in range(total):
                await sender.send("stream", str(i))
                if i % 1500 == 750:
                    if kills % 2 == 0:  # the receiver's reader, by id
                        for client_id in await reader_ids(admin, "sse-kill-receiver"):
                            admin.client_kill_filter(_id=client_id)
                    else:  # every normal connection, the sender's included
                        admin.client_kill_filter(_type="normal", skipme=True)
                    kills += 1
            with anyio.fail_after(30):
                while any(len(out) < total for out in received):
                    await anyio.sleep(0.05)
            group.cancel_scope.cancel()
    for out in received:
        assert out == list(range(total))
    backend = receiver.statistics().backend
    assert kills >= 6
    assert backend["reconnects"] >= 4
    assert backend["connected"]
    assert receiver.statistics().gaps == 0
    for sub in [*subs, both]:
        sub.close()


async def test_retried_send_is_stored_once(redis_url: str, prefix: str) -> None:
    # The parts a backend sends with, wired by hand: one link, the scripts, a fixed token.
    keys = Keys(prefix.encode(), "test")
    scripts = Scripts(keys, maxlen=1000, ttl_ms=0)
    link = Link(open_pool(redis_url, "sse-retry-test"))
    fields, token = encode(Event("once", channel="c")), b"test.1"

    async def attempt(retry: bool) -> Any:
        command = scripts.publish_command("c", fields, token, retry, "cand01", "cand01:0")
        return await run(link.call, command, scripts.publish)

    epoch, _ = await run(link.call, scripts.sync_command("cand01", "", 0), scripts.sync)
    first = await attempt(False)
    # The reply to the first attempt was lost (say): the retry finds the entry instead.
    found, again = await attempt(True)
    assert again == first
    assert found == epoch
    assert label_of(found) == "cand01"
    with redis.Redis.from_url(redis_url) as check:
        assert check.xlen(prefix + "ch:c") == 1
    await link.aclose()


async def test_statistics_show_reconnects_and_the_last_error(
    stores: Stores, redis_server: RedisServer
) -> None:
    store = await stores.start(client_name="sse-health")
    backend = store.statistics().backend
    assert backend["connected"] is True
    assert (backend["reconnects"], backend["last_error"]) == (0, None)
    with redis_server.client() as admin:
        for client_id in await reader_ids(admin, "sse-health"):
            admin.client_kill_filter(_id=client_id)
    with anyio.fail_after(5):
        while store.statistics().backend["reconnects"] == 0:
            await anyio.sleep(0.01)
    backend = store.statistics().backend
    assert "Connection" in backend["last_error"]
    with anyio.fail_after(5):
        while not store.statistics().backend["connected"]:
            await anyio.sleep(0.01)
    assert store.statistics().backend["reconnects"] == 1  # one connection lost, once


def forget_prefix(redis_server: RedisServer, prefix: str) -> None:
    """Redis loses every key of ``prefix`` (as a restart without persistence would)."""
    with redis_server.client() as admin:
        keys = list(admin.scan_iter(match=f"{prefix}*"))
        if keys:
            admin.delete(*keys)


async def test_send_after_another_process_began_a_new_epoch_gets_an_id_of_that_epoch(
    stores: Stores, redis_server: RedisServer
) -> None:
    # A long poll_interval: neither store syncs on its own during the test.
    a = await stores.start(poll_interval=5.0)
    b = await stores.start(poll_interval=5.0)
    old = await b.send("x", "old")
    forget_prefix(redis_server, stores.prefix)
    from_a = await a.send("x", "new from a")  # a finds the counter missing: a new epoch
    from_b = await b.send("x", "new from b")  # b has not synced since
    assert from_a.id is not None
    assert from_b.id is not None
    assert old.id is not None
    label = from_a.id.rpartition("-")[0]
    assert label != old.id.rpartition("-")[0]
    assert from_b.id == f"{label}-{n_of(from_a) + 1}"  # not the old label, not a used id


async def test_live_reader_gets_a_new_epochs_events_without_waiting_for_its_poll(
    stores: Stores, redis_server: RedisServer
) -> None:
    store = await stores.start(poll_interval=30.0)
    async with store.subscribe("x") as subscription:
        await store.send("x", "before")
        assert [e.data for e in await read(subscription, 1)] == ["before"]
        forget_prefix(redis_server, stores.prefix)
        await store.send("x", "after")  # this send finds the new epoch; the reader blocks
        events = await read(subscription, 2, timeout=5.0)  # not after a 30 s XREAD
    assert [e.event for e in events] == [GAP_EVENT, None]
    assert events[1].data == "after"
    backend = store.statistics().backend
    assert backend["events_read"] == 2  # the two events; the gap is no event read
    assert backend["gaps"] == 1


async def test_1000_subscribers_use_a_constant_small_number_of_connections(
    stores: Stores, redis_server: RedisServer
) -> None:
    store = await stores.start(client_name="sse-conn")
    sender = await stores.start(client_name="sse-conn-sender")
    name = f"sse-conn:{os.getpid()}:"

    def connections() -> int:
        with redis_server.client() as admin:
            return sum(1 for c in admin.client_list() if c["name"].startswith(name))

    await store.send("c0", "warm up")
    before = connections()
    subs = [store.subscribe(f"c{i % 100}") for i in range(1000)]
    for i in range(100):
        await sender.send(f"c{i}", str(i))
    for sub in subs:
        assert len(await read(sub, 1)) == 1
    during = connections()
    for sub in subs:
        sub.close()
    assert before == during == 2  # the reader's, and the one everything else shares
    assert store.statistics().backend["streams"] == 0


# -- lifecycle and errors ------------------------------------------------------------------


async def test_subscribing_without_async_with_raises_and_registers_nothing(
    redis_url: str, prefix: str
) -> None:
    store = ChannelStore(backend=RedisBackend(redis_url, prefix=prefix))
    event = await store.send("c", "sent without a reader")  # sending needs no reader
    assert event.id is not None
    with pytest.raises(RuntimeError, match="async with store"):
        store.subscribe("c", "d")
    assert store.statistics().subscribers == 0
    await store.aclose()


async def test_sse_app_served_alone_runs_a_redis_store_through_its_lifespan(
    redis_url: str, prefix: str
) -> None:
    """``SSEApp`` as the whole ASGI app: its lifespan starts the store (the Redis reader)."""
    store = ChannelStore(backend=RedisBackend(redis_url, prefix=prefix))
    app = SSEApp(store, "news")
    shutdown = anyio.Event()
    replies: list[str] = []

    async def receive() -> Any:
        if not replies:
            return {"type": "lifespan.startup"}
        await shutdown.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: Any) -> None:
        replies.append(message["type"])

    async with anyio.create_task_group() as group:
        group.start_soon(app, {"type": "lifespan"}, receive, send)
        with anyio.fail_after(5):
            while not replies:
                await anyio.sleep(0.01)
        assert replies == ["lifespan.startup.complete"]
        async with connect_sse(app) as stream:
            await stream.wait_comments(1)
            await store.send("news", "through Redis")
            assert [e.data for e in await stream.read_events(1)] == ["through Redis"]
            shutdown.set()
            await stream.wait_finished()  # the shutdown closed the store: the stream ends
    assert replies == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert store.closed


async def test_sse_app_lifespan_reports_a_store_that_cannot_start(prefix: str) -> None:
    unreachable = RedisBackend("redis://127.0.0.1:1/0", prefix=prefix)
    app = SSEApp(ChannelStore(backend=unreachable), "news")
    replies: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        replies.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in replies] == ["lifespan.startup.failed"]
    assert "cannot reach Redis" in replies[0]["message"]


async def test_unreachable_redis_fails_at_start_with_backend_error(prefix: str) -> None:
    store = ChannelStore(backend=RedisBackend("redis://127.0.0.1:1/0", prefix=prefix))
    with pytest.raises(BackendError, match="cannot reach Redis"):
        async with store:
            pass


def test_send_sync_from_a_process_without_an_event_loop(redis_url: str, prefix: str) -> None:
    store = ChannelStore(backend=RedisBackend(redis_url, prefix=prefix))
    results: list[Event] = []
    thread = threading.Thread(target=lambda: results.append(store.send_sync("jobs", {"done": 1})))
    thread.start()
    thread.join()
    (event,) = results
    with redis.Redis.from_url(redis_url) as check:
        ((entry_id, fields),) = check.xrange(f"{prefix}ch:jobs")
    assert list(fields.values()) == [b'{"done":1}']  # one field: header -> data
    assert event.id is not None
    assert event.id.endswith("-" + entry_id.decode().partition("-")[0])
    anyio.run(store.aclose)


def test_trio_is_refused_with_a_clear_error(redis_url: str) -> None:
    async def main() -> None:
        async with ChannelStore(backend=RedisBackend(redis_url)):
            pass

    with pytest.raises(RuntimeError, match="asyncio only"):
        anyio.run(main, backend="trio")


def test_importing_the_backends_package_does_not_import_redis() -> None:
    code = "import sse_channels, sse_channels.backends, sys; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"maxlen": 0}, "maxlen"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": 1, "poll_interval": 1}, "longer than poll_interval"),
        ({"poll_interval": float("inf")}, "poll_interval"),
        ({"client_name": "a b"}, "client_name"),
    ],
)
def test_bad_options_raise_value_error(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisBackend(**options)  # type: ignore[arg-type]


# -- regressions ---------------------------------------------------------------------------


async def test_backend_error_does_not_leak_the_password_of_the_url(prefix: str) -> None:
    # Regression: "cannot reach Redis at redis://user:s3cret@..." went into the error,
    # and from there into logs and the lifespan's startup.failed message.
    url = "redis://app:s3cret@127.0.0.1:1/0?password=qu3ry"
    with pytest.raises(BackendError, match="cannot reach Redis") as caught:
        await RedisBackend(url, prefix=prefix).start()
    message = str(caught.value)
    assert "s3cret" not in message
    assert "qu3ry" not in message
    assert "redis://app:***@127.0.0.1:1/0?password=***" in message


def test_publish_sync_records_last_error(prefix: str) -> None:
    # Regression: publish_sync retried and raised, but statistics() still said no error.
    backend = RedisBackend("redis://127.0.0.1:1/0", prefix=prefix)
    assert backend.statistics()["last_error"] is None
    with pytest.raises(BackendError, match="could not send to Redis"):
        backend.publish_sync("c", Event("lost", channel="c"))
    assert "ConnectionError" in backend.statistics()["last_error"]


def add_foreign_entry(client: redis.Redis, prefix: str, channel: str) -> int:
    """A malformed entry in ``channel``'s stream, numbered by the store's counter."""
    n = int(client.incr(f"{prefix}seq"))
    client.xadd(f"{prefix}ch:{channel}", {"not": "ours", "two": "fields"}, id=f"{n}-0")
    return n


async def test_malformed_entry_in_the_middle_of_an_xread_reply_loses_no_other_events(
    stores: Stores, redis_url: str, prefix: str
) -> None:
    # Regression: the entry raised out of the reader, which then dropped the events it had
    # already taken from the other streams of that reply, and read the same entry again
    # after every reconnection, so that its channel never went on.
    store = await stores.start()
    subscription = store.subscribe("b", "a")  # "b" comes first in the reader's XREAD
    sender = RedisBackend(redis_url, prefix=prefix)
    # The sends block the event loop: the reader gets them in as few replies as can be,
    # the foreign entry in the middle of one.
    sent = [sender.publish_sync("a", Event("a1", channel="a"))]
    with redis.Redis.from_url(redis_url) as client:
        sent.append(sender.publish_sync("b", Event("b1", channel="b")))
        foreign = add_foreign_entry(client, prefix, "a")
        sent.append(sender.publish_sync("b", Event("b2", channel="b")))
        sent.append(sender.publish_sync("a", Event("a2", channel="a")))
    await sender.aclose()
    got = await read_until(subscription, "a2")
    assert [e.data for e in got if e.event != GAP_EVENT] == ["a1", "b1", "b2", "a2"]
    assert [e.id for e in got if e.event != GAP_EVENT] == [e.id for e in sent if e is not None]
    (gap,) = [e for e in got if e.event == GAP_EVENT]
    assert json.loads(gap.data) == {"reason": "lost", "channel": "a"}
    assert gap.id is not None
    assert n_of(gap) == foreign
    backend = store.statistics().backend
    assert "malformed entry in 'a'" in backend["last_error"]
    assert backend["reconnects"] == 0  # the reader went on; it did not start over
    await store.send("a", "after")
    assert [e.data for e in await read(subscription, 1)] == ["after"]
    subscription.close()


async def test_resume_across_a_malformed_entry_gets_a_gap_then_the_events_after_it(
    stores: Stores, redis_url: str, prefix: str
) -> None:
    a = await stores.start()
    mark = await a.send("h", "seen")
    await a.send("h", "before")
    with redis.Redis.from_url(redis_url) as client:
        add_foreign_entry(client, prefix, "h")
    after = [await a.send("h", "after1"), await a.send("h", "after2")]
    b = await stores.start()  # never read "h": the resume comes from Redis
    async with b.subscribe("h", last_event_id=mark.id) as resumed:
        got = await read(resumed, 3)
    assert got[0].event == GAP_EVENT
    assert got[1:] == after
