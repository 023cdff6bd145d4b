"""What presence costs: a stream that joins against one that does not, and join/leave in a big room.

Run from a clone::

    .venv/bin/python benchmarks/presence.py [--connections N] [--room M] [--ops K]
                                            [--rounds R] [--redis URL | --no-redis]

Two scenarios, in interleaved rounds on plain asyncio (after a warm-up, each trial after a
``gc.collect()``); the tables show medians.

**Connect.** ``SSEApp`` on an in-memory store serves N connections, driven in-process
through ASGI (no sockets, so the figure is the library's own work): each request has its
user in a header and reads ``room``. A connection counts as made when its opening comment
is written and, with presence, when its join is registered and announced on
``presence:room`` (``presence.flush()``). Then every client leaves, and the time until
every stream is released (and every leave announced) is the disconnect cost. One row
without presence, one with ``presence=``; a watcher reads ``presence:room`` in the second,
so announcements reach a subscriber.

**Join and leave in a room of M members.** M members are in ``room`` already, and S
subscribers read ``presence:room``. K more members join, then leave, one
``presence.join`` / ``session.leave`` each; the publisher time per change is the time the
presence's worker needs to apply and announce the K changes (from the first call to
``flush()`` returning), divided by K. Rows: ``MemoryPresence``; ``RedisPresence`` (on a
private ``redis-server`` unless ``--redis`` names one; each change is one Lua script and
one Redis send); ``PostgresPresence`` with ``--postgres DSN`` (its store on
``PostgresBackend`` too; each change is one statement and one send); and, as the
baseline, a hand-written presence that sends the whole member list as the new state on
every change (``store.set``), which is what a page that only shows "who is online" could
do without diffs.

Targets: a connect costs at most 20% more with presence; a join or leave in the 10,000
member room takes under 1 ms of publisher time (every presence backend measured).
Results go to stdout; nothing is written. Exits with status 1 if a target fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Run as a script, this folder is first on sys.path, and its http.py would stand in for the
# standard library's http (which the ASGI layer imports).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from sse_channels import ChannelStore, Presence, PresenceBackend, PresenceSession  # noqa: E402
from sse_channels.asgi import SSEApp  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping


def _user_of(scope: Any) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-user":
            return str(value.decode())
    return None


# -- connect -------------------------------------------------------------------------------


async def connect_app(
    stack: AsyncExitStack, with_presence: bool
) -> tuple[ChannelStore, Presence, Any]:
    """The store, its presence and the ``SSEApp`` of a connect trial, open until ``stack`` ends.

    With presence, a watcher reads ``presence:room``, so announcements reach a subscriber.
    """
    store = ChannelStore()
    presence = Presence(store)
    await stack.enter_async_context(store)
    options: dict[str, Any] = {"heartbeat": None, "send_timeout": None}
    if with_presence:
        await stack.enter_async_context(presence)
        options["presence"] = presence
        watcher = store.subscribe("presence:room")
        stack.callback(watcher.close)
    return store, presence, SSEApp(store, "room", key=_user_of, **options)


async def connect_round(n: int, with_presence: bool) -> tuple[float, float]:
    """Seconds per connect and per disconnect for ``n`` in-process connections."""
    async with AsyncExitStack() as stack:
        store, presence, app = await connect_app(stack, with_presence)
        opened = 0
        all_open = asyncio.Event()
        leave = asyncio.Event()

        async def client(user: int) -> None:
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/",
                "query_string": b"",
                "headers": [(b"x-user", f"user-{user}".encode())],
            }

            async def receive() -> dict[str, Any]:
                await leave.wait()
                return {"type": "http.disconnect"}

            async def send(message: MutableMapping[str, Any]) -> None:
                nonlocal opened
                if message["type"] == "http.response.body" and message.get("body"):
                    opened += 1
                    if opened == n:
                        all_open.set()

            await app(scope, receive, send)

        began = time.perf_counter()
        tasks = [asyncio.create_task(client(i)) for i in range(n)]
        await all_open.wait()
        if with_presence:
            await presence.flush()
        connected = time.perf_counter() - began
        began = time.perf_counter()
        leave.set()
        await asyncio.gather(*tasks)
        if with_presence:
            await presence.flush()
            assert await presence.count("room") == 0
        disconnected = time.perf_counter() - began
        assert store.statistics().subscribers == (1 if with_presence else 0)
    return connected / n, disconnected / n


async def http_connect_round(n: int, with_presence: bool) -> tuple[float, float]:
    """Seconds per connect and per disconnect for ``n`` clients over loopback to uvicorn.

    uvicorn runs in this event loop, the clients too (one thread, as on one core): the
    figure is the whole stack per connect, HTTP parsing and sockets included.
    """
    import uvicorn

    async with AsyncExitStack() as stack:
        store, presence, app = await connect_app(stack, with_presence)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_level="warning", backlog=4096)
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)

        async def client(user: int) -> asyncio.StreamWriter:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET / HTTP/1.1\r\nhost: x\r\nx-user: user-{user}\r\n\r\n".encode())
            head = b""
            while b": ok" not in head:
                chunk = await reader.read(4096)
                assert chunk, "the server closed the stream"
                head += chunk
            return writer

        began = time.perf_counter()
        writers: list[asyncio.StreamWriter] = []
        for start in range(0, n, 100):  # 100 at a time: no listen-queue overflow
            writers += await asyncio.gather(*(client(i) for i in range(start, start + 100)))
        if with_presence:
            await presence.flush()
            assert await presence.count("room") == n
        connected = time.perf_counter() - began
        began = time.perf_counter()
        for writer in writers:
            writer.close()
        live = 1 if with_presence else 0
        while store.statistics().subscribers > live:
            await asyncio.sleep(0.001)
        if with_presence:
            await presence.flush()
            assert await presence.count("room") == 0
        disconnected = time.perf_counter() - began
        server.should_exit = True
        await serving
        sock.close()
    return connected / n, disconnected / n


# -- join and leave in a big room ------------------------------------------------------------


class WholeListPresence:
    """The baseline: the member list as one state value, sent whole on every change."""

    def __init__(self, store: ChannelStore) -> None:
        self.store = store
        self.members: dict[str, int] = {}
        self.queue: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()

    async def change(self, member: str, joined: bool) -> None:
        if joined:
            self.members[member] = self.members.get(member, 0) + 1
        elif self.members[member] == 1:
            del self.members[member]
        else:
            self.members[member] -= 1
        await self.store.set("presence:room", sorted(self.members), event="members")


async def room_round(
    kind: str,
    room: int,
    ops: int,
    subscribers: int,
    redis_url: str | None,
    postgres_dsn: str | None = None,
    *,
    one_at_a_time: bool = False,
) -> float:
    """Publisher seconds per join or leave in a room of ``room`` members.

    ``one_at_a_time``: each change is flushed before the next is made (no batch: the cost
    of a lone join or leave), instead of ``ops`` joins, then ``ops`` leaves, at once.
    """
    if kind == "whole list":
        store = ChannelStore()
        async with store:
            readers = [store.subscribe("presence:room") for _ in range(subscribers)]
            baseline = WholeListPresence(store)
            for n in range(room):
                baseline.members[f"member-{n}"] = 1
            began = time.perf_counter()
            for n in range(ops):
                await baseline.change(f"extra-{n}", True)
            for n in range(ops):
                await baseline.change(f"extra-{n}", False)
            took = time.perf_counter() - began
            for reader in readers:
                reader.close()
        return took / (2 * ops)
    backend: PresenceBackend | None = None
    store_backend: Any = None
    if kind == "PostgresPresence":
        assert postgres_dsn is not None
        from sse_channels.backends.postgres import PostgresBackend, PostgresPresence

        store_backend = PostgresBackend(postgres_dsn, schema=POSTGRES_SCHEMA)
        backend = PostgresPresence(postgres_dsn, schema=POSTGRES_SCHEMA, ttl=60)
    if kind == "RedisPresence":
        assert redis_url is not None
        import secrets

        from sse_channels.backends.redis import RedisBackend, RedisPresence

        prefix = f"bench-{secrets.token_hex(4)}:"
        store_backend = RedisBackend(redis_url, prefix=prefix)
        backend = RedisPresence(redis_url, prefix=prefix + "presence:", ttl=60)
    store = ChannelStore(store_backend)
    async with store:
        presence = Presence(store, backend)
        async with presence:
            sessions = [presence.join("room", f"member-{n}") for n in range(room)]
            await presence.flush()
            readers = [store.subscribe("presence:room") for _ in range(subscribers)]
            began = time.perf_counter()
            if one_at_a_time:
                for n in range(ops):
                    session = presence.join("room", f"extra-{n}", {"n": n})
                    await presence.flush()
                    session.leave()
                    await presence.flush()
            else:
                extra: list[PresenceSession] = [
                    presence.join("room", f"extra-{n}", {"n": n}) for n in range(ops)
                ]
                await presence.flush()
                for session in extra:
                    session.leave()
                await presence.flush()
            took = time.perf_counter() - began
            assert await presence.count("room") == room
            for session in sessions:
                session.leave()
            await presence.flush()
            for reader in readers:
                reader.close()
    return took / (2 * ops)


#: The schema the PostgresPresence rows use (dropped at the end).
POSTGRES_SCHEMA = "bench_presence"


# -- running ---------------------------------------------------------------------------------


def _start_redis() -> tuple[str, subprocess.Popen[bytes], tempfile.TemporaryDirectory[str]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.TemporaryDirectory()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", directory.name, "--loglevel", "warning"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
    )
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0", process, directory


def _median(trials: list[Callable[[], Awaitable[float]]], rounds: int) -> list[float]:
    results: list[list[float]] = [[] for _ in trials]
    for r in range(rounds):
        order = list(range(len(trials)))
        order = order[r % len(order) :] + order[: r % len(order)]  # rotate the order
        for index in order:
            gc.collect()
            results[index].append(asyncio.run(_timed(trials[index])))
    return [statistics.median(values) for values in results]


async def _timed(trial: Callable[[], Awaitable[float]]) -> float:
    return await trial()


def connect_table(title: str, trials: list[list[tuple[float, float]]]) -> float:
    """Print one connect table (without, then with presence); the connect cost's ratio."""
    rows = []
    for flag, label in ((False, "without presence"), (True, "with presence=")):
        per_connect = statistics.median(c for c, _ in trials[flag])
        per_leave = statistics.median(d for _, d in trials[flag])
        rows.append((label, per_connect, per_leave))
    print(f"\n### {title}\n")
    print("| | µs per connect | µs per disconnect | connect vs without |")
    print("|---|---:|---:|---:|")
    for label, per_connect, per_leave in rows:
        ratio = per_connect / rows[0][1]
        print(f"| {label} | {per_connect * 1e6:.1f} | {per_leave * 1e6:.1f} | {ratio:.2f}x |")
    return rows[1][1] / rows[0][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--http-connections", type=int, default=1000)
    parser.add_argument("--room", type=int, default=10_000)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument(
        "--lone-ops", type=int, default=200, help="joins and leaves made one at a time"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis", help="a Redis URL (default: a private redis-server)")
    parser.add_argument("--no-redis", action="store_true", help="skip the RedisPresence row")
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        help="add a PostgresPresence row on this database (schema bench_presence, dropped)",
    )
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, asyncio")

    n = args.connections
    http: list[list[tuple[float, float]]] = [[], []]
    for flag in (False, True):  # warm-up, not counted
        asyncio.run(http_connect_round(args.http_connections, flag))
    for r in range(args.rounds):
        for flag in (False, True) if r % 2 == 0 else (True, False):
            gc.collect()
            http[flag].append(asyncio.run(http_connect_round(args.http_connections, flag)))
    connect: list[list[tuple[float, float]]] = [[], []]
    for flag in (False, True):  # warm-up, not counted
        asyncio.run(connect_round(n, flag))
    for r in range(args.rounds):
        for flag in (False, True) if r % 2 == 0 else (True, False):
            gc.collect()  # each trial starts with the same garbage: none
            connect[flag].append(asyncio.run(connect_round(n, flag)))
    connect_ratio = connect_table(
        f"Connect: {n:,} streams through SSEApp (in-process ASGI), median of {args.rounds}",
        connect,
    )
    http_ratio = connect_table(
        f"Connect over HTTP: {args.http_connections:,} clients to uvicorn on loopback "
        f"(one event loop), median of {args.rounds}",
        http,
    )

    redis_url = args.redis
    process = directory = None
    if redis_url is None and not args.no_redis:
        if shutil.which("redis-server") is None:
            print("\n(no redis-server on PATH: the RedisPresence row is skipped)")
        else:
            redis_url, process, directory = _start_redis()
    kinds = ["MemoryPresence"]
    if redis_url is not None:
        kinds.append("RedisPresence")
    if args.postgres is not None:
        kinds.append("PostgresPresence")
    kinds.append("whole list")
    try:
        trials: list[Callable[[], Awaitable[float]]] = [
            partial(
                room_round, kind, args.room, args.ops, args.subscribers, redis_url, args.postgres
            )
            for kind in kinds
        ]
        lone_kinds = [kind for kind in kinds if kind != "whole list"]  # it has no batch
        trials += [
            partial(
                room_round,
                kind,
                args.room,
                args.lone_ops,
                args.subscribers,
                redis_url,
                args.postgres,
                one_at_a_time=True,
            )
            for kind in lone_kinds
        ]
        found = _median(trials, args.rounds)
        medians, lone = found[: len(kinds)], found[len(kinds) :]
    finally:
        if process is not None:
            process.terminate()
            process.wait()
        if directory is not None:
            directory.cleanup()
        if args.postgres is not None:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE")
    print(
        f"\n### Join and leave: {args.ops:,} joins then leaves in a room of {args.room:,}, "
        f"{args.subscribers:,} subscribers of presence:room, median of {args.rounds}\n"
    )
    print(
        f"| | µs publisher time per join or leave, {args.ops:,} at once "
        f"| one at a time ({args.lone_ops:,} each) |"
    )
    print("|---|---:|---:|")
    for kind, value in zip(kinds, medians, strict=True):
        alone = f"{lone[lone_kinds.index(kind)] * 1e6:.1f}" if kind in lone_kinds else "same"
        print(f"| {kind} | {value * 1e6:.1f} | {alone} |")

    failed = False
    print()
    for where, ratio in (("over HTTP", http_ratio), ("in-process", connect_ratio)):
        verdict = "PASS" if ratio <= 1.2 else "FAIL"
        failed |= verdict == "FAIL"
        print(f"{verdict}: a connect {where} with presence costs {ratio:.2f}x (target <= 1.20x)")
    # medians[i] is lone_kinds[i] for every kind but "whole list", the last one.
    for kind, value, single in zip(lone_kinds, medians, lone, strict=False):
        verdict = "PASS" if max(value, single) < 1e-3 else "FAIL"
        failed |= verdict == "FAIL"
        print(
            f"{verdict}: {kind}: {value * 1e6:.0f} µs per join or leave in the "
            f"{args.room:,} room, {single * 1e6:.0f} µs one at a time (target < 1000 µs)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
