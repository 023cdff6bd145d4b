"""PostgresBackend against a real PostgreSQL (see ``_postgres.py``): the contract, sending in
the application's transaction, ordering under out-of-order commits, faults, retention.

Two stores with two backends in one process stand for two server processes here: they
share nothing but the database. Separate processes are in ``test_postgres_multiprocess.py``.
psycopg's async connections need asyncio, so these tests run on asyncio.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from _postgres import connect, postgres_dsn, postgres_server, schema
from sse_channels import ChannelStore, Event, Subscription
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
