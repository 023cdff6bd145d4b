"""A real PostgreSQL for the tests, with a database of its own per run.

``SSE_POSTGRES_DSN`` if set, else the server on 127.0.0.1:5432 (user ``postgres``, trust
auth, which ``.ci/run`` makes sure is installed and running). The session creates a
database ``sse_test_<random>`` on it and drops it when the session ends. Where no server
answers but PostgreSQL is installed, a private server is started in a temporary directory
(``initdb`` + ``pg_ctl``) instead; tests are skipped, with that reason, only where
PostgreSQL is not installed (or psycopg is missing).

``private_postgres`` starts a server of its own for a test that must stop and start it.
Each test should use its own schema (``unique_schema()``) so tests never see each other's
tables.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ENV_DSN = "SSE_POSTGRES_DSN"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_BIN_DIRS = (
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -e '.[dev]')"
)
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402


def unique_schema() -> str:
    """A schema name no other test uses."""
    return f"t_{secrets.token_hex(4)}"


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _BIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def with_database(dsn: str, database: str) -> str:
    return make_conninfo(dsn, dbname=database)


@dataclass
class PrivateServer:
    """A PostgreSQL server of the tests' own, in a temporary directory, that may be restarted."""

    directory: str
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        initdb = _tool("initdb")
        assert initdb is not None
        data = Path(self.directory) / "data"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        pg_ctl = _tool("pg_ctl")
        assert pg_ctl is not None
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        self._run(
            pg_ctl,
            "-D",
            f"{self.directory}/data",
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "-l",
            f"{self.directory}/log",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = _tool("pg_ctl")
        assert pg_ctl is not None
        self._run(pg_ctl, "-D", f"{self.directory}/data", "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _start_private() -> PrivateServer:
    if _tool("initdb") is None or _tool("pg_ctl") is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl) and no server answers")
    directory = tempfile.mkdtemp(prefix="sse-channels-pg-")
    server = PrivateServer(directory, _free_port())
    try:
        server.init()
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The DSN of a server the tests may create databases on (see the module docstring)."""
    dsn = os.environ.get(ENV_DSN)
    if dsn:
        if not _reachable(dsn):
            raise RuntimeError(f"{ENV_DSN} is set but PostgreSQL does not answer there")
        yield dsn
        return
    if _reachable(DEFAULT_DSN):
        yield DEFAULT_DSN
        return
    server = _start_private()
    try:
        yield server.dsn
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """A database of this run's own (``sse_test_<random>``), dropped when the session ends."""
    name = f"sse_test_{secrets.token_hex(5)}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def schema() -> str:
    return unique_schema()


@pytest.fixture
def private_postgres() -> Iterator[PrivateServer]:
    """A server of the test's own, which it may stop and start."""
    server = _start_private()
    try:
        yield server
    finally:
        server.remove()


def connect(dsn: str, **options: Any) -> Any:
    """A sync psycopg connection (autocommit unless told otherwise)."""
    options.setdefault("autocommit", True)
    return psycopg.connect(dsn, **options)


def database_of(dsn: str) -> str:
    return str(conninfo_to_dict(dsn).get("dbname", ""))


# -- a server process on a shared database (for test_postgres_multiprocess.py) ---------------

#: Environment of ``make_app``: the DSN and schema the server processes share.
APP_DSN_ENV = "SSE_CHANNELS_TEST_APP_POSTGRES_DSN"
APP_SCHEMA_ENV = "SSE_CHANNELS_TEST_APP_SCHEMA"
#: The ``application_name`` the server processes give their backend (``pg_stat_activity``).
APP_NAME = "sse-mp-server"


def make_app() -> Any:
    """An ASGI app on a PostgreSQL-backed store: ``uvicorn --factory _postgres:make_app``.

    - ``GET /events?channel=a,b``: the event stream (``Last-Event-ID`` resumes);
    - ``POST /send?channel=a&data=x``: send one event, answer its id;
    - ``GET /stats``: the store's statistics as JSON, with the process id;
    - ``GET /``: ``ok`` (the readiness probe).
    """
    import json
    from urllib.parse import parse_qs

    from sse_channels import ChannelStore
    from sse_channels.asgi import SSEApp
    from sse_channels.backends.postgres import PostgresBackend

    # History longer than any test sends: a server slowed down by a busy machine must not
    # find its next events trimmed (that would rightly be a gap, not what is tested).
    backend = PostgresBackend(
        os.environ[APP_DSN_ENV],
        schema=os.environ[APP_SCHEMA_ENV],
        maxlen=20_000,
        application_name=APP_NAME,
    )
    store = ChannelStore(backend=backend, history=20_000)

    def query(scope: Any) -> dict[str, str]:
        pairs = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        return {name: values[-1] for name, values in pairs.items()}

    events = SSEApp(store, lambda scope: query(scope)["channel"].split(","), heartbeat=5.0)

    async def respond(send: Any, body: bytes) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            async with store:
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/events":
            await events(scope, receive, send)
        elif path == "/send":
            params = query(scope)
            event = await store.send(params["channel"], params["data"])
            await respond(send, (event.id or "").encode())
        elif path == "/stats":
            stats = store.statistics()
            body = {"pid": os.getpid(), "backend": stats.backend, "subscribers": stats.subscribers}
            await respond(send, json.dumps(body).encode())
        else:
            await respond(send, b"ok")

    return app
