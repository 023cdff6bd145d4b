"""Cross-process fan-out through PostgreSQL: sse-channels and its peers, deliveries/s and latency.

Run from a clone::

    .venv/bin/python benchmarks/postgres.py [--events E] [--subscribers S ...] [--receivers R]
                                            [--rounds N] [--dsn DSN]

One publisher process sends E numbered events, one ``await`` at a time, to one channel; R
receiver processes (the "servers") each hold S subscribers of that channel. Every
subscriber turns every event into its SSE wire bytes the way its stack does when it streams
a response, and checks the sequence number at the start of each payload: anything lost,
repeated or out of order fails the trial, which is then not timed. The stacks:

- sse-channels: ``ChannelStore(backend=PostgresBackend(dsn))`` in ``async with``; subscribers
  read ``async for batch in sub.batches()`` and join the events' bytes, as its ASGI response
  does; the publisher calls ``await store.send(channel, payload)``. The only stack with
  history and resume: every event is a row of the outbox table, and with the default
  ``synchronous_commit=True`` each send returns once its commit is flushed to disk (the
  NOTIFY-only stacks below write nothing durable);
- the same with the opt-in ``PostgresBackend(dsn, synchronous_commit=False)`` publisher
  (a crash of PostgreSQL may lose the last acknowledged sends; docs/postgres.md). Shown
  for reference: the targets are judged on the default row;
- sse-starlette over broadcaster: ``Broadcast("postgres://...")`` (asyncpg, ``pg_notify``
  per publish), ``ServerSentEvent(data=...).encode()`` per event and subscriber;
- Litestar's channels plugin on ``AsyncPgChannelsBackend``, ``start_subscription`` +
  ``iter_events()``, ``ServerSentEventMessage(data=...).encode()``;
  ``await plugin.wait_published(...)``;
- a hand-written baseline on raw asyncpg: ``await conn.execute("SELECT pg_notify($1, $2)")``;
  each receiver has one ``add_listener`` callback that encodes each notification once with
  an f-string and puts the bytes on one ``asyncio.Queue`` per subscriber.

deliveries/s = E x S x R / (time the last subscriber got the last event - time of the first
send), on the host's monotonic clock, which all processes share. Latency is send to receipt
for every event of the first subscriber of each receiver. The CPU columns: the receivers'
CPU per delivery and the publisher's per event (from when each was ready until its last
event; start-up and shutdown are not counted, nor in the elapsed time). Trials run in
interleaved rounds (the order rotates); the table shows medians. The script creates a
database of its own (``sse_bench_<random>``) on ``--dsn`` (default ``$SSE_POSTGRES_DSN`` or
``postgresql://postgres@127.0.0.1:5432/postgres``) and drops it at the end. Results go to
stdout; nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

# Keep this folder off the import path (a file of it must never shadow a package).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
STACKS = ["sse-channels", "sse-channels-async-commit", "broadcaster", "litestar", "baseline"]
TITLES = {
    "sse-channels": "sse-channels `PostgresBackend`",
    "sse-channels-async-commit": "sse-channels, opt-in `synchronous_commit=False`",
    "broadcaster": "sse-starlette over broadcaster (postgres)",
    "litestar": "Litestar channels (`AsyncPgChannelsBackend`)",
    "baseline": "hand-written raw asyncpg LISTEN/NOTIFY",
}
#: Targets from the issue: sse-channels' deliveries/s at least this many times each row's.
TARGETS = {"broadcaster": 2.0, "litestar": 1.5, "baseline": 0.8}
#: After the 8-digit sequence number and the 19-digit send time: about 100 bytes of JSON.
FILLER = '{"user":"alice","action":"price-change","item":{"sku":"A-1042","price":19.99}}'
SCHEMA = "bench"


def payload(seq: int) -> str:
    return f"{seq:08d} {time.monotonic_ns():019d} {FILLER}"


def asyncpg_url(dsn: str) -> str:
    """asyncpg and broadcaster take URLs only: turn a key=value DSN into one."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    return f"postgresql://{user}{password}@{host}:{port}/{params.get('dbname', 'postgres')}"


class Check:
    """One subscriber's view: the next sequence number it must see, and its latencies."""

    def __init__(self, events: int, record: bool) -> None:
        self.events = events
        self.next = 0
        self.latencies: list[int] | None = [] if record else None
        self.error: str | None = None
        #: When the last event arrived (not when the receiver process has shut down), and
        #: the process's CPU time then.
        self.finished = 0
        self.cpu = 0.0

    def see(self, data: str) -> bool:
        """Check one payload; True once every event has arrived (or on an error)."""
        head = data[:8]
        if not head.isdigit():
            self.error = f"expected event {self.next}, got {data[:60]!r}"
            return True
        seq = int(head)
        if seq != self.next:
            self.error = f"expected event {self.next}, got {seq}"
            return True
        if self.latencies is not None:
            self.latencies.append(time.monotonic_ns() - int(data[9:28]))
        self.next += 1
        if self.next == self.events:
            self.finished = time.monotonic_ns()
            self.cpu = time.process_time()
            return True
        return False


# -- receivers (one process each) -------------------------------------------------------------


async def receive_ours(dsn: str, channel: str, checks: list[Check]) -> None:
    from sse_channels import ChannelStore
    from sse_channels.backends.postgres import PostgresBackend

    events = checks[0].events
    backend = PostgresBackend(dsn, schema=SCHEMA, maxlen=max(1000, events))
    store = ChannelStore(backend=backend, history=max(1000, events))

    async def subscriber(check: Check) -> None:
        async with store.subscribe(channel) as subscription:
            async for batch in subscription.batches():
                body = b"".join([event.encoded for event in batch])  # what the response writes
                assert body
                for event in batch:
                    if check.see(event.data):
                        return

    async with store, anyio.create_task_group() as group:
        for check in checks:
            group.start_soon(subscriber, check)
        await anyio.sleep(0)
        ready()


async def receive_broadcaster(dsn: str, channel: str, checks: list[Check]) -> None:
    from broadcaster import Broadcast
    from sse_starlette import ServerSentEvent

    subscribed = anyio.Semaphore(0)

    async def subscriber(broadcast: Broadcast, check: Check) -> None:
        async with broadcast.subscribe(channel) as subscription:
            subscribed.release()
            async for event in subscription:  # type: ignore[union-attr]
                message: str = cast("Any", event).message
                assert ServerSentEvent(data=message).encode()
                if check.see(message):
                    return

    async with Broadcast(asyncpg_url(dsn)) as broadcast, anyio.create_task_group() as group:
        # One at a time: broadcaster's postgres backend shares one asyncpg connection, and
        # concurrent first subscribes fail there ("another operation is in progress").
        for check in checks:
            group.start_soon(subscriber, broadcast, check)
            await subscribed.acquire()
        ready()


async def receive_litestar(dsn: str, channel: str, checks: list[Check]) -> None:
    from litestar.channels import ChannelsPlugin
    from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend
    from litestar.response.sse import ServerSentEventMessage

    subscribed = anyio.Semaphore(0)

    async def subscriber(plugin: ChannelsPlugin, check: Check) -> None:
        async with plugin.start_subscription(channel) as subscription:
            subscribed.release()
            async for data in subscription.iter_events():
                text = data.decode() if isinstance(data, bytes) else str(data)
                assert ServerSentEventMessage(data=text).encode()
                if check.see(text):
                    return

    backend = AsyncPgChannelsBackend(asyncpg_url(dsn))
    plugin = ChannelsPlugin(backend=backend, channels=[channel], subscriber_max_backlog=None)
    async with plugin, anyio.create_task_group() as group:
        for check in checks:
            group.start_soon(subscriber, plugin, check)
        for _ in checks:
            await subscribed.acquire()
        ready()


async def receive_baseline(dsn: str, channel: str, checks: list[Check]) -> None:
    import asyncpg

    connection = await asyncpg.connect(asyncpg_url(dsn))
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in checks]

    def listener(connection: Any, pid: int, channel: str, message: str) -> None:
        chunk = f"data: {message}\n\n".encode()
        for queue in queues:
            queue.put_nowait(chunk)

    await connection.add_listener(channel, listener)

    async def subscriber(queue: asyncio.Queue[bytes], check: Check) -> None:
        while True:
            chunk = await queue.get()
            if check.see(chunk[6:-2].decode()):
                return

    ready()
    async with anyio.create_task_group() as readers:
        for queue, check in zip(queues, checks, strict=True):
            readers.start_soon(subscriber, queue, check)
    await connection.close()


RECEIVERS = {
    "sse-channels": receive_ours,
    "sse-channels-async-commit": receive_ours,  # only its publisher differs
    "broadcaster": receive_broadcaster,
    "litestar": receive_litestar,
    "baseline": receive_baseline,
}


#: This process's CPU time when it became ready (receivers) or sent its first event
#: (publisher): start-up and imports are not counted.
CPU_AT_START = 0.0


def ready() -> None:
    global CPU_AT_START
    CPU_AT_START = time.process_time()
    print("ready", flush=True)


def run_receiver(stack: str, dsn: str, channel: str, subscribers: int, events: int) -> None:
    checks = [Check(events, record=i == 0) for i in range(subscribers)]
    anyio.run(RECEIVERS[stack], dsn, channel, checks)
    errors = [c.error for c in checks if c.error is not None]
    print(
        json.dumps(
            {
                "done": max(c.finished for c in checks),
                "latencies": checks[0].latencies,
                "errors": errors,
                "cpu": max(c.cpu for c in checks) - CPU_AT_START,
            }
        ),
        flush=True,
    )


# -- publishers (one process each) ------------------------------------------------------------


#: The publisher's CPU time when its last send returned (closing is not counted).
CPU_AT_END = 0.0


def finished() -> None:
    global CPU_AT_END
    CPU_AT_END = time.process_time()


def started() -> int:
    """Note the CPU time at the first send; return the monotonic time of that send."""
    global CPU_AT_START
    CPU_AT_START = time.process_time()
    return time.monotonic_ns()


async def publish(stack: str, dsn: str, channel: str, events: int) -> int:
    """Send ``events`` payloads; return the monotonic time of the first send."""
    first = time.monotonic_ns()
    if stack.startswith("sse-channels"):
        from sse_channels import ChannelStore
        from sse_channels.backends.postgres import PostgresBackend

        # The table keeps every event of the trial: nothing is trimmed under a reader that
        # the benchmark's own load slows down (that would be a gap, and a failed trial).
        backend = PostgresBackend(
            dsn,
            schema=SCHEMA,
            maxlen=max(1000, events),
            synchronous_commit=stack == "sse-channels",
        )
        async with ChannelStore(backend=backend) as store:
            first = started()
            for seq in range(events):
                await store.send(channel, payload(seq))
            finished()
    elif stack == "broadcaster":
        from broadcaster import Broadcast

        async with Broadcast(asyncpg_url(dsn)) as broadcast:
            first = started()
            for seq in range(events):
                await broadcast.publish(channel, payload(seq))
            finished()
    elif stack == "litestar":
        from litestar.channels import ChannelsPlugin
        from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend

        backend_ = AsyncPgChannelsBackend(asyncpg_url(dsn))
        async with ChannelsPlugin(backend=backend_, channels=[channel]) as plugin:
            first = started()
            for seq in range(events):
                await plugin.wait_published(payload(seq), channel)
            finished()
    else:
        import asyncpg

        connection = await asyncpg.connect(asyncpg_url(dsn))
        first = started()
        for seq in range(events):
            await connection.execute("SELECT pg_notify($1, $2)", channel, payload(seq))
        finished()
        await connection.close()
    return first


def run_publisher(stack: str, dsn: str, channel: str, events: int) -> None:
    first = anyio.run(publish, stack, dsn, channel, events)
    print(
        json.dumps({"first": first, "end": time.monotonic_ns(), "cpu": CPU_AT_END - CPU_AT_START}),
        flush=True,
    )


# -- the orchestrator -------------------------------------------------------------------------


@dataclass
class Trial:
    rate: float | None
    latencies: list[int] = field(default_factory=list)
    error: str | None = None
    #: CPU seconds (user + system, from ready or the first send) per delivery in receivers,
    #: and per event in the publisher: where the time goes when a stack is slower.
    receiver_cpu: float = 0.0
    publisher_cpu: float = 0.0


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """One line of a child's stdout, or raise TimeoutError."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(process.stdout.fileno(), False)
    buffer = ""
    while time.monotonic() < deadline:
        chunk = process.stdout.readline()
        if chunk:
            buffer += chunk
            if buffer.endswith("\n"):
                return buffer
        elif process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        else:
            time.sleep(0.005)
    raise TimeoutError


def trial(
    python: str, stack: str, dsn: str, subscribers: int, receivers: int, events: int, n: int
) -> Trial:
    channel = f"t{os.getpid()}_{n}"
    command = [python, os.path.abspath(__file__)]
    size = [str(subscribers), str(events)]
    children: list[subprocess.Popen[str]] = []
    try:
        for _ in range(receivers):
            children.append(
                subprocess.Popen(
                    [*command, "_receive", stack, dsn, channel, *size],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for child in children:
            read_line(child, 30)
        time.sleep(0.3)  # let every LISTEN reach PostgreSQL before the first send
        publisher = subprocess.Popen(
            [*command, "_publish", stack, dsn, channel, str(events)],
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(publisher)
        timeout = 60 + events / 20  # Litestar opens a connection per publish: slow
        results = [json.loads(read_line(child, timeout)) for child in children[:receivers]]
        sent = json.loads(read_line(publisher, timeout))
    except (TimeoutError, RuntimeError) as exc:
        return Trial(None, error=f"{type(exc).__name__}: {exc}" if str(exc) else "timed out")
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
    errors = [e for r in results for e in r["errors"]]
    if errors:
        return Trial(None, error=errors[0])
    elapsed = (max(r["done"] for r in results) - sent["first"]) / 1e9
    latencies = [ns for r in results for ns in r["latencies"]]
    deliveries = events * subscribers * receivers
    receiver_cpu = sum(r["cpu"] for r in results) / deliveries
    return Trial(deliveries / elapsed, latencies, None, receiver_cpu, sent["cpu"] / events)


def versions(dsn: str) -> dict[str, str]:
    from importlib import metadata

    import psycopg

    names = ("sse-channels", "psycopg", "asyncpg", "broadcaster", "sse-starlette", "litestar")
    found = {name: metadata.version(name) for name in names}
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    found["server"] = str(row[0]).split()[0] if row else "?"
    return found


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}"


def report(
    results: dict[tuple[str, int], list[Trial]], args: argparse.Namespace, meta: dict[str, str]
) -> list[str]:
    lines: list[str] = []
    lines.append(
        f"CPython {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; PostgreSQL {meta['server']}; psycopg {meta['psycopg']}, "
        f"asyncpg {meta['asyncpg']}, sse-channels {meta['sse-channels']}, broadcaster "
        f"{meta['broadcaster']}, sse-starlette {meta['sse-starlette']}, Litestar "
        f"{meta['litestar']}. {args.events:,} events, {args.receivers} receiver processes, "
        f"median of {args.rounds} rounds."
    )
    verdicts: list[str] = []
    for subscribers in args.subscribers:
        lines += [
            "",
            f"**{subscribers} subscriber(s) per receiver** ({subscribers * args.receivers} in all)",
            "",
            "| Stack | deliveries/s | latency p50 (ms) | p99 (ms) | receiver CPU µs/delivery "
            "| publisher CPU µs/event | sse-channels ÷ this |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        medians: dict[str, float | None] = {}
        for stack in STACKS:
            trials = results[(stack, subscribers)]
            good = [t for t in trials if t.rate is not None]
            if len(good) < len(trials):
                failed = next(t.error for t in trials if t.rate is None)
                lines.append(f"| {TITLES[stack]} | FAILED ({failed}) | | | | | |")
                medians[stack] = None
                continue
            rate = statistics.median(t.rate for t in good if t.rate is not None)
            medians[stack] = rate
            latencies = sorted(ns for t in good for ns in t.latencies)
            p50 = latencies[len(latencies) // 2]
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            ours = medians.get("sse-channels")
            times = f"{ours / rate:.2f}x" if ours else ""
            receiver_cpu = statistics.median(t.receiver_cpu for t in good) * 1e6
            publisher_cpu = statistics.median(t.publisher_cpu for t in good) * 1e6
            lines.append(
                f"| {TITLES[stack]} | {rate:,.0f} | {_ms(p50)} | {_ms(p99)} "
                f"| {receiver_cpu:.1f} | {publisher_cpu:.1f} | {times} |"
            )
        ours = medians.get("sse-channels")
        for stack, target in TARGETS.items():
            theirs = medians.get(stack)
            if ours and theirs:
                ratio = ours / theirs
                verdict = "PASS" if ratio >= target else "FAIL"
                verdicts.append(
                    f"- {verdict}: {subscribers} subscriber(s): sse-channels is {ratio:.2f}x "
                    f"{TITLES[stack]} (target {target}x)"
                )
    return [*lines, "", *verdicts]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_receive":
        stack, dsn, channel, subscribers, events = argv[1:]
        run_receiver(stack, dsn, channel, int(subscribers), int(events))
        return
    if argv and argv[0] == "_publish":
        stack, dsn, channel, events = argv[1:]
        run_publisher(stack, dsn, channel, int(events))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000, help="events per trial")
    parser.add_argument(
        "--subscribers",
        type=int,
        nargs="+",
        default=[1, 100],
        help="subscribers per receiver process; one table each",
    )
    parser.add_argument("--receivers", type=int, default=2, help="receiver processes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dsn", default=os.environ.get("SSE_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--only", nargs="+", choices=STACKS, help="run only these stacks")
    args = parser.parse_args(argv)
    import psycopg
    from psycopg.conninfo import make_conninfo

    database = f"sse_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    dsn = make_conninfo(args.dsn, dbname=database)
    try:
        meta = versions(dsn)
        stacks = args.only or STACKS
        results: dict[tuple[str, int], list[Trial]] = {}
        n = 0
        for subscribers in args.subscribers:
            for round_ in range(args.rounds):
                order = stacks[round_ % len(stacks) :] + stacks[: round_ % len(stacks)]
                for stack in order:
                    n += 1
                    outcome = trial(
                        sys.executable, stack, dsn, subscribers, args.receivers, args.events, n
                    )
                    results.setdefault((stack, subscribers), []).append(outcome)
                    shown = f"{outcome.rate:,.0f}/s" if outcome.rate else outcome.error
                    print(f"  {subscribers:>4} subs {stack:<13} {shown}", file=sys.stderr)
        for stack in STACKS:
            for subscribers in args.subscribers:
                results.setdefault((stack, subscribers), [Trial(None, error="not run")])
        print("\n".join(report(results, args, meta)))
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


if __name__ == "__main__":
    main()
