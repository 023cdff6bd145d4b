"""PostgresBackend against a real PostgreSQL (see ``_postgres.py``): the contract, sending in
the application's transaction, ordering under out-of-order commits, faults, retention.

Two stores with two backends in one process stand for two server processes here: they
share nothing but the database. Separate processes are in ``test_postgres_multiprocess.py``.
psycopg's async connections need asyncio, so these tests run on asyncio.
"""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _postgres import connect, postgres_dsn, postgres_server, schema
from sse_channels import GAP_EVENT, ChannelStore, Event, Subscription
from sse_channels.backends.postgres import PostgresBackend, send_in, send_in_async
from sse_channels.testing.backend_contract import BackendFactory, NetworkedBackendContract

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["postgres_dsn", "postgres_server", "schema"]  # fixtures, re-exported

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Stores:
    """Starts stores on one database and schema, each with its own backend; closes them all."""

    def __init__(self, dsn: str, schema: str, stack: AsyncExitStack) -> None:
        self.dsn, self.schema, self._stack = dsn, schema, stack

    def backend(self, **options: Any) -> PostgresBackend:
        return PostgresBackend(self.dsn, schema=self.schema, **options)

    async def start(self, **options: Any) -> ChannelStore:
        names = ("maxlen", "max_age", "poll_interval", "trim_interval", "application_name")
        backend_options = {k: options.pop(k) for k in names if k in options}
        store = ChannelStore(backend=self.backend(**backend_options), **options)
        return await self._stack.enter_async_context(store)


@pytest.fixture
async def stores(postgres_dsn: str, schema: str) -> AsyncIterator[Stores]:
    async with AsyncExitStack() as stack:
        yield Stores(postgres_dsn, schema, stack)


async def read(subscription: Subscription, n: int, timeout: float = 10.0) -> list[Event]:
    events: list[Event] = []
    with anyio.fail_after(timeout):
        while len(events) < n:
            events.extend(await subscription.receive_batch())
    return events


async def read_until(subscription: Subscription, data: str, timeout: float = 10.0) -> list[Event]:
    events: list[Event] = []
    with anyio.fail_after(timeout):
        while not events or events[-1].data != data:
            events.extend(await subscription.receive_batch())
    return events


# -- the backend contract, unchanged ------------------------------------------------------


class TestPostgresBackendContract(NetworkedBackendContract):
    """The contract every backend passes, on a real PostgreSQL (one schema per test)."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def make_backend(self, postgres_dsn: str, schema: str) -> BackendFactory:
        # Backends made by one test share the schema: two processes of one deployment.
        return lambda history: PostgresBackend(
            postgres_dsn, schema=schema, maxlen=history, trim_interval=0.05
        )


# -- publishing in the application's transaction -------------------------------------------


async def test_send_in_a_committed_transaction_reaches_subscribers_after_the_commit(
    stores: Stores,
) -> None:
    backend = stores.backend()
    store = await stores._stack.enter_async_context(ChannelStore(backend=backend))
    subscription = store.subscribe("orders")
    with connect(stores.dsn, autocommit=False) as conn, conn.transaction():
        sent = send_in(conn, "orders", {"id": 7}, event="created", schema=stores.schema)
        # Not committed yet: nobody has it.
        with anyio.move_on_after(0.3):
            early = await subscription.receive_batch()
            raise AssertionError(f"delivered before the commit: {early}")
    (got,) = await read(subscription, 1)
    assert (got.data, got.event, got.id, got.channel) == ('{"id":7}', "created", sent.id, "orders")
    assert backend.parse_id(sent.id or "") is not None
    subscription.close()


async def test_rolled_back_transactions_event_reaches_nobody(stores: Stores) -> None:
    a = await stores.start()
    b = await stores.start()
    on_a, on_b = a.subscribe("friends:1"), b.subscribe("friends:1")
    with connect(stores.dsn, autocommit=False) as conn:
        try:
            with conn.transaction():
                send_in(conn, "friends:1", "user 1 is online", schema=stores.schema)
                raise RuntimeError("login failed")
        except RuntimeError:
            pass
        with conn.transaction():
            savepoint_kept = send_in(conn, "friends:1", "kept", schema=stores.schema)
            try:
                with conn.transaction():  # a savepoint, rolled back alone
                    send_in(conn, "friends:1", "savepoint rolled back", schema=stores.schema)
                    raise ValueError
            except ValueError:
                pass
    await a.send("friends:1", "end")
    for subscription in (on_a, on_b):
        events = await read_until(subscription, "end")
        assert [e.data for e in events] == ["kept", "end"]
        assert events[0].id == savepoint_kept.id
        subscription.close()
    # The rolled-back rows are not in the history either.
    resumed = a.subscribe("friends:1", last_event_id=savepoint_kept.id)
    await a.send("friends:1", "after")
    assert [e.data for e in await read(resumed, 2)] == ["end", "after"]
    resumed.close()


async def test_send_in_async_commits_with_the_async_transaction(stores: Stores) -> None:
    import psycopg

    store = await stores.start()
    subscription = store.subscribe("users")
    async with await psycopg.AsyncConnection.connect(stores.dsn) as aconn:
        async with aconn.transaction():
            first = await send_in_async(aconn, "users", "one", retry=500, schema=stores.schema)
        with pytest.raises(ZeroDivisionError):  # noqa: PT012
            async with aconn.transaction():
                await send_in_async(aconn, "users", "never", schema=stores.schema)
                1 / 0  # noqa: B018
        async with aconn.transaction():
            custom = await send_in_async(aconn, "users", "two", id="u-2", schema=stores.schema)
    events = await read(subscription, 2)
    assert [(e.data, e.id, e.retry) for e in events] == [
        ("one", first.id, 500),
        ("two", "u-2", None),
    ]
    assert custom.id == "u-2"
    subscription.close()


async def test_send_in_with_a_django_connection_commits_with_atomic(stores: Stores) -> None:
    pytest.importorskip("django")
    import psycopg
    from django.conf import settings
    from django.db import connections, transaction

    import django_app
    from _postgres import database_of

    django_app.configure()
    assert settings.configured
    params = psycopg.conninfo.conninfo_to_dict(stores.dsn)
    alias = f"sse_{stores.schema}"
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database_of(stores.dsn),
        "USER": params.get("user", "postgres"),
        "HOST": params.get("host", "127.0.0.1"),
        "PORT": params.get("port", "5432"),
    }
    configured = connections.configure_settings({"default": {}, alias: database})
    connections.settings[alias] = configured[alias]
    store = await stores.start()
    subscription = store.subscribe("django")

    def in_django() -> str:
        connection = connections[alias]
        try:
            with transaction.atomic(using=alias):
                sent = send_in(connection, "django", "committed", schema=stores.schema)
            try:
                with transaction.atomic(using=alias):
                    send_in(connection, "django", "rolled back", schema=stores.schema)
                    raise RuntimeError
            except RuntimeError:
                pass
            return sent.id or ""
        finally:
            connection.close()

    try:
        sent_id = await anyio.to_thread.run_sync(in_django)
    finally:
        connections.settings.pop(alias)
    await store.send("django", "end")
    events = await read_until(subscription, "end")
    assert [(e.data, e.id) for e in events[:-1]] == [("committed", sent_id)]
    subscription.close()


async def test_send_in_refuses_bad_input_before_writing(stores: Stores) -> None:
    await stores.start()  # creates the tables
    with connect(stores.dsn) as conn:
        with pytest.raises(ValueError, match="channel"):
            send_in(conn, "a*", "x", schema=stores.schema)
        with pytest.raises(TypeError, match="channel"):
            send_in(conn, 7, "x", schema=stores.schema)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="schema"):
            send_in(conn, "a", "x", schema="Bad-Name")
        with pytest.raises(ValueError):
            send_in(conn, "a", "x", id="bad\nid", schema=stores.schema)
        count = conn.execute(f"SELECT count(*) FROM {stores.schema}.events").fetchone()
        assert count == (0,)


# -- order under out-of-order commits ---------------------------------------------------------


async def commit_out_of_order(
    dsn: str, schema: str, commit_order: list[int], rolled_back: set[int], per_txn: int = 3
) -> tuple[list[Event], list[tuple[int, int]]]:
    """Open ``len(commit_order)`` transactions, insert interleaved, commit in ``commit_order``.

    Each transaction waits, before its commit, for an advisory lock the test holds; the
    locks are released one by one in ``commit_order``, and each release waits until that
    transaction has ended. Returns the events the committed transactions wrote, and
    ``(txid, id)`` of each, as ``send_in_async`` answered.
    """
    import psycopg

    n = len(commit_order)
    base = int.from_bytes(__import__("secrets").token_bytes(3), "big") << 8
    admin = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    connections = [await psycopg.AsyncConnection.connect(dsn) for _ in range(n)]
    written: dict[int, list[Event]] = {i: [] for i in range(n)}
    try:
        for i in range(n):
            await admin.execute("SELECT pg_advisory_lock(%s)", (base + i,))
        # Transactions take their ids in index order; their rows' ids interleave.
        for round_ in range(per_txn):
            for i, conn in enumerate(connections):
                event = await send_in_async(conn, "feed", f"t{i}-{round_}", schema=schema)
                written[i].append(event)
        ended = [anyio.Event() for _ in range(n)]

        async def finish(i: int) -> None:
            conn = connections[i]
            await conn.execute("SELECT pg_advisory_lock_shared(%s)", (base + i,))
            if i in rolled_back:
                await conn.rollback()
            else:
                await conn.commit()
            ended[i].set()

        async with anyio.create_task_group() as group:
            for i in range(n):
                group.start_soon(finish, i)
            for i in commit_order:
                await admin.execute("SELECT pg_advisory_unlock(%s)", (base + i,))
                with anyio.fail_after(10):
                    await ended[i].wait()
    finally:
        for conn in [*connections, admin]:
            await conn.close()
    committed = [event for i in range(n) if i not in rolled_back for event in written[i]]
    positions = []
    for event in committed:
        assert event.id is not None
        txid, _, row_id = event.id.partition("-")[2].partition(".")
        positions.append((int(txid), int(row_id)))
    return committed, positions


async def test_out_of_order_commits_reach_every_subscriber_once_in_one_order(
    stores: Stores,
) -> None:
    a = await stores.start()
    b = await stores.start()
    subscribers = [a.subscribe("feed"), a.subscribe("feed"), b.subscribe("feed")]
    # Reverse order: the transaction holding the smallest ids commits last.
    written, positions = await commit_out_of_order(
        stores.dsn, stores.schema, commit_order=[5, 4, 3, 2, 1, 0], rolled_back={2}
    )
    assert sorted(positions) != sorted(positions, key=lambda p: p[1])  # ids interleave
    await a.send("feed", "end")
    expected = [event for _, event in sorted(zip(positions, written, strict=True))]
    runs = []
    for subscription in subscribers:
        events = await read_until(subscription, "end")
        runs.append([(e.data, e.id) for e in events[:-1]])
        subscription.close()
    # Every committed event once, the same order everywhere: (txid, id), not id order.
    assert runs[0] == [(e.data, e.id) for e in expected]
    assert runs[1] == runs[0]
    assert runs[2] == runs[0]
    assert not any(data.startswith("t2-") for data, _ in runs[0])
    # A resume from any delivered id, on either process, gives exactly the rest.
    for index, (_, event_id) in enumerate(runs[0]):
        for store in (a, b):
            resumed = store.subscribe("feed", last_event_id=event_id)
            events = await read_until(resumed, "end")
            assert [(e.data, e.id) for e in events[:-1]] == runs[0][index + 1 :]
            resumed.close()


async def test_events_wait_for_an_older_open_transaction_then_come_in_order(
    stores: Stores,
) -> None:
    import psycopg

    store = await stores.start(poll_interval=0.05)
    subscription = store.subscribe("feed")
    async with await psycopg.AsyncConnection.connect(stores.dsn) as older:
        first = await send_in_async(older, "feed", "older, committed last", schema=stores.schema)
        # A later transaction (the backend's own send) commits while the older one is open:
        later = await store.send("feed", "later, committed first")
        with anyio.move_on_after(0.5):
            early = await subscription.receive_batch()
            raise AssertionError(f"delivered past an open older transaction: {early}")
        await older.commit()
    events = await read(subscription, 2)
    assert [(e.data, e.id) for e in events] == [
        ("older, committed last", first.id),
        ("later, committed first", later.id),
    ]
    assert store.statistics().backend["held_reads"] >= 1
    subscription.close()


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(4)),
    rolled_back=st.sets(st.integers(0, 3), max_size=2),
)
async def test_any_commit_order_gives_every_subscriber_the_position_order(
    stores: Stores, order: list[int], rolled_back: set[int]
) -> None:
    channel_store = await stores.start()
    subscription = channel_store.subscribe("feed")
    written, positions = await commit_out_of_order(
        stores.dsn, stores.schema, list(order), rolled_back, per_txn=2
    )
    marker = await channel_store.send("feed", "end")
    events = await read_until(subscription, "end")
    expected = [e.id for _, e in sorted(zip(positions, written, strict=True))]
    assert [e.id for e in events[:-1]] == expected
    # Resume from the middle, on a new process.
    other = await stores.start()
    if expected:
        middle = len(expected) // 2
        resumed = other.subscribe("feed", last_event_id=expected[middle])
        got = await read_until(resumed, "end")
        assert [e.id for e in got] == [*expected[middle + 1 :], marker.id]
        resumed.close()
    subscription.close()


# -- payloads -----------------------------------------------------------------------------------


async def test_a_1_mb_event_goes_through_live_and_from_history(stores: Stores) -> None:
    a = await stores.start()
    b = await stores.start()
    live = b.subscribe("big")
    big = "x" * (1 << 20) + "\u00e9\x00end"  # far above NOTIFY's 8,000 bytes; NUL is fine
    sent = await a.send("big", big)
    with connect(stores.dsn, autocommit=False) as conn, conn.transaction():
        in_txn = send_in(conn, "big", big[::-1], schema=stores.schema)
    got = await read(live, 2)
    assert [(e.data, e.id) for e in got] == [(big, sent.id), (big[::-1], in_txn.id)]
    # A client resuming on a process that never watched the channel: from history.
    fresh = await stores.start()
    resumed = fresh.subscribe("big", last_event_id=sent.id)
    (again,) = await read(resumed, 1)
    assert (again.data, again.id) == (big[::-1], in_txn.id)
    live.close()
    resumed.close()


# -- retention, lost logs ------------------------------------------------------------------------


def gap_of(event: Event) -> dict[str, Any]:
    assert event.event == GAP_EVENT, event
    decoded: dict[str, Any] = json.loads(event.data)
    return decoded


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


async def test_a_lost_log_starts_a_new_epoch_and_subscribers_get_a_gap(stores: Stores) -> None:
    store = await stores.start(poll_interval=0.05)
    subscription = store.subscribe("room")
    before = await store.send("room", "before")
    assert [e.data for e in await read(subscription, 1)] == ["before"]
    old_epoch = store.statistics().backend["epoch"]
    with connect(stores.dsn) as admin:
        admin.execute(f"DROP SCHEMA {stores.schema} CASCADE")
    # The reader fails, reconnects, makes the tables anew: a new epoch.
    await wait_for(lambda: store.statistics().backend["epoch"] not in (None, old_epoch))
    after = await store.send("room", "after")
    events = await read_until(subscription, "after")
    assert gap_of(events[0])["channel"] == "room"
    assert [(e.data, e.id) for e in events[1:]] == [("after", after.id)]
    # Resuming from an id of the lost log: a gap (never a silent hole), then the new log.
    resumed = store.subscribe("room", last_event_id=before.id)
    got = await read_until(resumed, "after")
    assert gap_of(got[0])["reason"] in ("lost", "unknown_id")
    assert [e.id for e in got[1:]] == [after.id]
    resumed.close()
    # On a process that never saw the old log, its ids are unknown.
    other = await stores.start()
    elsewhere = other.subscribe("room", last_event_id=before.id)
    (signal,) = await read(elsewhere, 1)
    assert gap_of(signal)["reason"] == "unknown_id"
    elsewhere.close()
    subscription.close()


async def test_trimming_keeps_maxlen_per_channel_and_a_reader_behind_gets_a_gap(
    stores: Stores,
) -> None:
    import psycopg

    role = f"lag_{stores.schema}"
    with connect(stores.dsn) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    try:
        trimmer = await stores.start(maxlen=5, trim_interval=0.05, history=5)
        lagging_dsn = psycopg.conninfo.make_conninfo(stores.dsn, user=role)
        lagging_backend = PostgresBackend(
            lagging_dsn, schema=stores.schema, maxlen=5, poll_interval=0.05, max_backoff=0.2
        )
        lagging = await stores._stack.enter_async_context(ChannelStore(backend=lagging_backend))
        behind = lagging.subscribe("c")
        first = await trimmer.send("c", "0")
        assert [e.id for e in await read(behind, 1)] == [first.id]
        # The lagging process loses its connections and cannot log in again for a while.
        with connect(stores.dsn) as admin:
            admin.execute(f"ALTER ROLE {role} NOLOGIN")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
        sent = [await trimmer.send("c", str(i)) for i in range(1, 31)]
        await trimmer.send("other", "x")  # another channel is not trimmed by c's length

        def rows(channel: str) -> int:
            with connect(stores.dsn) as conn:
                found = conn.execute(
                    f"SELECT count(*) FROM {stores.schema}.events WHERE channel = %s",
                    (channel,),
                ).fetchone()
            assert found is not None
            return int(found[0])

        await wait_for(lambda: rows("c") <= 5)
        assert rows("other") == 1
        with connect(stores.dsn) as admin:
            admin.execute(f"ALTER ROLE {role} LOGIN")
        # Back, it finds what it had not read trimmed: a gap, then the retained rest.
        events = await read_until(behind, "30")
        assert gap_of(events[0])["channel"] == "c"
        assert [e.id for e in events[1:]] == [e.id for e in sent[-len(events) + 1 :]]
        assert len(events) - 1 <= 5
        assert lagging.statistics().backend["gaps"] >= 1
        # A resume from before the retained history gets a gap too (from any process).
        resumed = trimmer.subscribe("c", last_event_id=first.id)
        got = await read(resumed, 1)
        assert got[0].event == GAP_EVENT
        resumed.close()
        behind.close()
    finally:
        await stores._stack.aclose()
        with connect(stores.dsn) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            admin.execute(f"DROP ROLE IF EXISTS {role}")


async def test_max_age_deletes_old_events_inside_the_backend(stores: Stores) -> None:
    store = await stores.start(max_age=2.0, trim_interval=0.05)
    old = await store.send("aged", "old")
    await anyio.sleep(1.5)
    fresh = await store.send("aged", "fresh")  # "old" goes in 0.5 s, "fresh" 1.5 s later

    def left() -> list[str]:
        with connect(stores.dsn) as conn:
            return [
                bytes(row[0]).decode()
                for row in conn.execute(f"SELECT data FROM {stores.schema}.events ORDER BY id")
            ]

    await wait_for(lambda: "old" not in left())
    assert left() == ["fresh"]
    other = await stores.start()
    resumed = other.subscribe("aged", last_event_id=old.id)
    await store.send("aged", "end")
    events = await read_until(resumed, "end")
    # "old" is gone and nothing pretends otherwise: either a gap or nothing before "fresh".
    assert [e.data for e in events if e.event != GAP_EVENT] == ["fresh", "end"]
    assert events[-2].id == fresh.id
    resumed.close()


# -- the backend's own sends ---------------------------------------------------------------------


async def test_concurrent_sends_share_statements_and_keep_their_call_order(stores: Stores) -> None:
    store = await stores.start()
    subscription = store.subscribe("burst")
    sent: dict[int, Event] = {}

    async def send(i: int) -> None:
        sent[i] = await store.send("burst", str(i))

    async with anyio.create_task_group() as group:
        for i in range(200):
            group.start_soon(send, i)  # asyncio starts them in this order
    events = await read(subscription, 200)
    assert [e.data for e in events] == [str(i) for i in range(200)]
    assert [e.id for e in events] == [sent[i].id for i in range(200)]
    with connect(stores.dsn) as conn:
        found = conn.execute(
            f"SELECT count(DISTINCT txid), count(*) FROM {stores.schema}.events"
        ).fetchone()
    assert found is not None
    transactions, rows = found
    assert rows == 200
    assert transactions < 50  # batched: many events per statement and commit
    subscription.close()


async def test_closing_the_backend_leaves_no_send_waiting(stores: Stores) -> None:
    from sse_channels import BackendError, StoreClosedError

    store = ChannelStore(backend=stores.backend())
    outcomes: list[str] = []

    async def send(i: int) -> None:
        try:
            await store.send("c", str(i))
            outcomes.append("sent")
        except (BackendError, StoreClosedError):
            outcomes.append("refused")

    with anyio.fail_after(10):
        async with store, anyio.create_task_group() as group:
            for i in range(100):
                group.start_soon(send, i)
            await anyio.sleep(0)
            await store.aclose()
    assert len(outcomes) == 100
    assert "refused" in outcomes or outcomes == ["sent"] * 100


# -- the prepared send path (psycopg.pq) ----------------------------------------------------


async def test_a_send_after_the_server_forgot_its_prepared_statement_prepares_it_again(
    stores: Stores,
) -> None:
    backend = stores.backend()
    async with ChannelStore(backend=backend) as store:
        first = await store.send("c", "one")
        link = backend.link
        assert link is not None

        async def forget(connection: Any) -> None:
            await connection.execute("DEALLOCATE ALL")

        await link.run(forget)
        second = await store.send("c", "two", event="e", retry=5)
        third = await store.send("c", "three", id="mine")
        async with store.subscribe("c", last_event_id=first.id) as subscription:
            events = await read(subscription, 2)
    assert [(e.data, e.event, e.retry, e.id) for e in events] == [
        ("two", "e", 5, second.id),
        ("three", None, None, "mine"),
    ]
    assert third.id == "mine"


async def test_a_send_refused_by_postgresql_raises_backend_error_and_the_next_works(
    stores: Stores,
) -> None:
    from sse_channels import BackendError

    store = await stores.start()
    async with store.subscribe("c") as subscription:
        await store.send("c", "one")
        with connect(stores.dsn, autocommit=True) as conn:
            conn.execute(
                f"ALTER TABLE {stores.schema}.events ADD CONSTRAINT short CHECK (length(data) < 10)"
            )
        with pytest.raises(BackendError, match="refused"):
            await store.send("c", "x" * 20)
        sent = await store.send("c", "two")
        events = await read(subscription, 2)
    assert [e.data for e in events] == ["one", "two"]
    assert events[-1].id == sent.id


async def test_a_send_survives_its_connection_being_terminated_mid_stream(
    stores: Stores,
) -> None:
    import os

    store = await stores.start(application_name="sse-prepared-test")
    mine = f"sse-prepared-test:{os.getpid()}:send"
    async with store.subscribe("c") as subscription:
        for i in range(20):
            if i % 5 == 2:
                with connect(stores.dsn, autocommit=True) as conn:
                    killed = conn.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = %s AND datname = current_database()",
                        (mine,),
                    ).fetchone()
                assert killed == (1,)
            await store.send("c", str(i))
        events = await read(subscription, 20)
    assert [e.data for e in events] == [str(i) for i in range(20)]


async def test_a_read_does_not_scan_the_whole_log_regression_held_back_check(
    stores: Stores,
) -> None:
    # The check for rows held back by an open transaction was an EXISTS over a row
    # comparison, planned as a sequential scan of every row while the table has no
    # statistics yet (a new table, as the benchmark's): 18 ms per read at 150,000 rows.
    from sse_channels.backends.postgres._schema import Sql

    store = await stores.start()
    await store.send("c", "first")
    s = stores.schema
    with connect(stores.dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {s}.events (channel, data) "
            "SELECT 'c' || (n % 50), 'x'::bytea FROM generate_series(1, 30000) AS n"
        )
        txid, row_id = conn.execute(
            f"SELECT txid::text, id FROM {s}.events ORDER BY txid DESC, id DESC LIMIT 1"
        ).fetchone()
        read = Sql(s).read
        parts = read.split("%s")
        numbered = "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE r (text, bigint, bigint, bigint) AS {numbered}")
        plan = "\n".join(
            row[0]
            for row in conn.execute(f"EXPLAIN EXECUTE r('{txid}', {row_id}, 500, 0)").fetchall()
        )
    assert "Seq Scan on events" not in plan, plan


@pytest.mark.parametrize(
    ("option", "expected"), [({}, "on"), ({"synchronous_commit": False}, "off")]
)
async def test_sends_are_durable_by_default_and_async_commit_is_opt_in(
    stores: Stores, option: dict[str, bool], expected: str
) -> None:
    backend = stores.backend(**option)
    async with ChannelStore(backend=backend) as store:
        await store.send("c", "one")
        link = backend.link
        assert link is not None

        async def setting(connection: Any) -> str:
            cursor = await connection.execute("SHOW synchronous_commit")
            row = await cursor.fetchone()
            return str(row[0])

        assert await link.run(setting) == expected


async def test_closing_while_the_reader_is_in_a_statement_lets_it_finish_and_logs_nothing(
    postgres_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Cancelled mid-statement, psycopg asks the server to cancel the query, the cancel scope
    # interrupts that as well, and psycopg logs "query cancellation interrupted" and drops
    # the connection. Held on a lock, the reader is certain to be mid-statement at close.
    caplog.set_level(logging.WARNING, logger="psycopg")
    store = ChannelStore(PostgresBackend(postgres_dsn, schema=schema, poll_interval=0.05))
    async with store, store.subscribe("news") as feed:
        await store.send("news", "before")
        assert [e.data for e in await feed.receive_batch()] == ["before"]
        with connect(postgres_dsn, autocommit=False) as locker:
            locker.execute(f"LOCK TABLE {schema}.events IN ACCESS EXCLUSIVE MODE")
            await anyio.sleep(0.3)  # the reader's next read now waits for the lock
            with connect(postgres_dsn) as admin:
                waiting = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND application_name LIKE 'sse-channels:%:listen'"
                ).fetchone()
            assert waiting == (1,)

            async def release() -> None:
                await anyio.sleep(0.3)
                locker.commit()

            async with anyio.create_task_group() as group:
                group.start_soon(release)
                began = anyio.current_time()
                await store.aclose()  # waits for the read (under its grace), then closes
                took = anyio.current_time() - began
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []
    assert 0.2 <= took < 2.0 + 1.0  # it waited for the read, within the grace
