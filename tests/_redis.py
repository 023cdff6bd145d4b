"""A real Redis for the tests: ``SSE_CHANNELS_REDIS_URL`` if set, else a private redis-server.

Import the fixtures into a test module (``from _redis import redis_server, redis_url``).
The private server listens on a free loopback port, keeps nothing on disk (``--save ""
--appendonly no`` in a temporary directory) and is stopped when the session ends. Tests are
skipped, with that reason, only when no ``redis-server`` is installed and no URL is set.

Each test should use its own key prefix (``unique_prefix()``) so tests never see each
other's keys on a shared server.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import redis

if TYPE_CHECKING:
    from collections.abc import Iterator

ENV_URL = "SSE_CHANNELS_REDIS_URL"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{secrets.token_hex(4)}:"


@dataclass
class RedisServer:
    """A Redis the tests may use; ``restart_empty()`` makes it forget everything."""

    url: str
    port: int | None = None
    directory: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def private(self) -> bool:
        """True if the tests started this server themselves (so they may restart it)."""
        return self.process is not None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        assert self.port is not None
        assert self.directory is not None
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err.strip()}")
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not answer within 10 s") from None
                time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def restart_empty(self, prefix: str) -> None:
        """Restart with no data on the same address (what a crash without persistence does).

        On a server the tests did not start (``SSE_CHANNELS_REDIS_URL``) the effect is
        reproduced without a restart: the keys under ``prefix`` are deleted and every
        client connection is killed.
        """
        if self.private:
            self.stop()
            self.start()
            return
        with self.client() as client:
            keys = list(client.scan_iter(match=prefix.replace("*", "\\*") + "*", count=1000))
            if keys:
                client.delete(*keys)
            client.client_kill_filter(_type="normal", skipme=True)


def _start_private() -> RedisServer:
    directory = tempfile.mkdtemp(prefix="sse-channels-redis-")
    error: Exception | None = None
    for _ in range(5):  # the free port may be taken between probing and binding
        port = _free_port()
        server = RedisServer(f"redis://127.0.0.1:{port}/0", port, directory)
        try:
            server.start()
            return server
        except RuntimeError as exc:
            error = exc
    shutil.rmtree(directory, ignore_errors=True)
    raise RuntimeError(f"could not start redis-server: {error}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis (see the module docstring)."""
    url = os.environ.get(ENV_URL)
    if url:
        yield RedisServer(url)
        return
    if shutil.which("redis-server") is None:
        pytest.skip(f"no redis-server on PATH and {ENV_URL} is not set")
    server = _start_private()
    try:
        yield server
    finally:
        server.stop()
        if server.directory is not None:
            shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def restartable_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """A Redis a test may restart: a server of its own, unless a URL was given."""
    if not redis_server.private:
        yield redis_server
        return
    server = _start_private()
    try:
        yield server
    finally:
        server.stop()
        if server.directory is not None:
            shutil.rmtree(server.directory, ignore_errors=True)


# -- a server process on a shared Redis (for test_redis_multiprocess.py) ---------------------

#: Environment of ``make_app``: the Redis URL and key prefix the server processes share.
APP_URL_ENV = "SSE_CHANNELS_TEST_APP_REDIS_URL"
APP_PREFIX_ENV = "SSE_CHANNELS_TEST_APP_PREFIX"
#: The ``client_name`` the server processes give their backend (``CLIENT LIST`` shows it).
APP_CLIENT_NAME = "sse-mp-server"


def make_app() -> Any:
    """An ASGI app on a Redis-backed store: run it with ``uvicorn --factory _redis:make_app``.

    - ``GET /events?channel=a,b``: the event stream (``Last-Event-ID`` resumes);
    - ``POST /send?channel=a&data=x``: send one event, answer its id;
    - ``GET /stats``: the store's statistics as JSON, with the process id;
    - ``GET /``: ``ok`` (the readiness probe).

    The store runs in the app's lifespan (``async with store``), which owns its reader.
    """
    from urllib.parse import parse_qs

    from sse_channels import ChannelStore
    from sse_channels.asgi import SSEApp
    from sse_channels.backends.redis import RedisBackend

    # Streams keep more than any test sends, so that a reader slowed down by a busy machine
    # never finds its next events trimmed (that would rightly be a gap, not what is tested).
    backend = RedisBackend(
        os.environ[APP_URL_ENV],
        prefix=os.environ[APP_PREFIX_ENV],
        maxlen=20_000,
        client_name=APP_CLIENT_NAME,
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
