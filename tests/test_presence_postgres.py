"""PostgresPresence on a real PostgreSQL (a database per run, a schema per test)."""

from __future__ import annotations

import anyio
import pytest

from _postgres import connect, postgres_dsn, postgres_server, schema
from sse_channels import ChannelStore, Presence, PresenceBackend, PresenceView
from sse_channels.backends.postgres import PostgresBackend, PostgresPresence
from sse_channels.testing.presence_contract import (
    NetworkedPresenceContract,
    PresenceFactory,
    StoreBackendFactory,
    follow_until,
)

__all__ = ["postgres_dsn", "postgres_server", "schema"]  # fixtures, re-exported

pytestmark = pytest.mark.anyio

TTL = 1.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TestPostgresPresenceContract(NetworkedPresenceContract):
    """The presence contract, with two processes sharing one database and schema."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def make_presence(self, postgres_dsn: str, schema: str) -> PresenceFactory:
        return lambda: PostgresPresence(postgres_dsn, schema=schema, ttl=TTL)

    @pytest.fixture
    def make_store_backend(self, postgres_dsn: str, schema: str) -> StoreBackendFactory:
        return lambda: PostgresBackend(postgres_dsn, schema=schema, poll_interval=0.05)

    @pytest.fixture
    def expiry(self) -> float:
        return PostgresPresence(ttl=TTL).expiry


def test_postgres_presence_satisfies_the_protocol_and_checks_its_options() -> None:
    assert isinstance(PostgresPresence(), PresenceBackend)
    assert PostgresPresence(ttl=3).expiry == pytest.approx(4.0)
    for options in ({"ttl": 0}, {"ttl": 1, "interval": 2}):
        with pytest.raises(ValueError):
            PostgresPresence(**options)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PostgresPresence(schema="Robert'); DROP TABLE students;--")
    with pytest.raises(TypeError):
        PostgresPresence("")


async def test_postgres_presence_process_swept_while_cut_off_registers_again_once(
    postgres_dsn: str, schema: str
) -> None:
    def store() -> ChannelStore:
        return ChannelStore(PostgresBackend(postgres_dsn, schema=schema, poll_interval=0.05))

    backend = PostgresPresence(postgres_dsn, schema=schema, ttl=30, interval=1.0)
    sweeper = PostgresPresence(postgres_dsn, schema=schema, ttl=30, interval=0.05)
    one, two = store(), store()
    async with (
        one,
        Presence(one, backend) as presence,
        two,
        Presence(two, sweeper),
        one.subscribe("presence:room") as feed,
    ):
        view = await follow_until(feed, PresenceView(), lambda v: True)
        tabs = [presence.join("room", "alice"), presence.join("room", "alice")]
        bob = presence.join("room", "bob")
        await follow_until(feed, view, lambda v: set(v.members) == {"alice", "bob"})
        beats = backend.statistics()["heartbeats"]
        with anyio.fail_after(5):
            while backend.statistics()["heartbeats"] == beats:
                await anyio.sleep(0.01)
        # As if its heartbeats had stopped reaching the database for longer than ttl.
        with connect(postgres_dsn) as admin:
            admin.execute(
                f"UPDATE {schema}.presence_processes SET expires_at = now() - interval '1 hour'"
                " WHERE process = %s",
                (backend.process,),
            )
        await follow_until(feed, view, lambda v: not v.members)
        assert sweeper.statistics()["expired_members"] == 2
        await follow_until(feed, view, lambda v: set(v.members) == {"alice", "bob"})
        assert backend.statistics()["registered_again"] == 3
        members = await presence.members("room")
        assert {m: len(metas) for m, metas in members.items()} == {"alice": 2, "bob": 1}
        await anyio.sleep(1.2)
        with connect(postgres_dsn) as admin:
            (rows,) = admin.execute(
                f"SELECT count(*) FROM {schema}.presence_connections"
            ).fetchone()
        assert rows == 3
        for tab in (*tabs, bob):
            tab.leave()
        await follow_until(feed, view, lambda v: not v.members)
    with connect(postgres_dsn) as admin:
        for table in ("presence_connections", "presence_members", "presence_processes"):
            (rows,) = admin.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()
            assert rows == 0, table


async def test_postgres_presence_closing_during_a_heartbeat_waits_for_it_and_logs_nothing(
    postgres_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: closing cancelled the heartbeat's statement in flight, and psycopg
    # logged "query cancellation interrupted (CancelledError): closing connection".
    store = ChannelStore()
    backend = PostgresPresence(postgres_dsn, schema=schema, ttl=1.0, interval=0.1)
    with connect(postgres_dsn) as admin:
        async with store:
            presence = Presence(store, backend)
            async with presence:
                presence.join("room", "alice").leave()
                await presence.flush()  # nothing left to remove: aclose goes to the backend
                # Hold the process's heartbeat row: the next beat waits on its lock.
                admin.execute("BEGIN")
                admin.execute(
                    f"SELECT 1 FROM {schema}.presence_processes WHERE process = %s FOR UPDATE",
                    (backend.process,),
                )
                await anyio.sleep(0.3)  # a beat is under way, blocked
                with anyio.fail_after(5):
                    async with anyio.create_task_group() as group:
                        group.start_soon(presence.aclose)
                        await anyio.sleep(0.2)
                        admin.execute("COMMIT")  # the beat finishes; then the close does
        assert presence.closed
    assert backend.statistics()["errors"] == 0, backend.statistics()["last_error"]
    assert backend.statistics()["heartbeats"] >= 2
    warnings = [r for r in caplog.records if r.levelno >= 30 and r.name.startswith("psycopg")]
    assert warnings == []
    assert await_count(postgres_dsn, schema) == 0


def await_count(dsn: str, schema: str) -> int:
    with connect(dsn) as admin:
        (found,) = admin.execute(f"SELECT count(*) FROM {schema}.presence_connections").fetchone()
    return int(found)


async def test_postgres_presence_snapshot_does_not_claim_a_change_still_in_flight(
    postgres_dsn: str, schema: str
) -> None:
    # A join whose transaction has not committed is invisible to a snapshot; the snapshot's
    # version must then stay below the join's, or readers would ignore the join when it is
    # announced (its version "covered" by a snapshot that does not list the member).
    backend = PostgresPresence(postgres_dsn, schema=schema, ttl=30)
    async with (
        ChannelStore() as store,
        Presence(store, backend) as presence,
        presence.join("room", "bob"),
    ):
        with connect(postgres_dsn, autocommit=False) as db:
            row = db.execute(
                f"SELECT {schema}.presence_add('room', 'c1', 'alice', '{{}}', 'other', 30000)"
            ).fetchone()
            assert row is not None
            joined = int(row[0])
            version, members = await backend.snapshot("room")
            db.commit()
        assert set(members) == {"bob"}
        assert joined > version
        after, members = await backend.snapshot("room")
        assert set(members) == {"alice", "bob"}
        assert after >= joined
