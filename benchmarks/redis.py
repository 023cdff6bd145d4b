"""Cross-process fan-out through Redis: sse-channels and its peers, deliveries/s and latency.

Run from a clone::

    .venv/bin/python benchmarks/redis.py [--events E] [--subscribers S ...] [--receivers R]
                                         [--rounds N] [--redis URL] [--python PATH]

One publisher process sends E numbered events, one ``await`` at a time, to one channel; R
receiver processes each hold S subscribers of that channel. Every subscriber turns every
event into its SSE wire bytes the way its stack does when it streams a response, and checks
the sequence number at the start of each payload: anything lost, repeated or out of order
fails the trial, which is then not timed. The stacks:

- sse-channels: ``ChannelStore(backend=RedisBackend(url))`` in ``async with``; subscribers
  read ``async for batch in sub.batches()`` and join the events' bytes, as its ASGI response
  does; the publisher calls ``await store.send(channel, payload)``;
- sse-starlette over broadcaster: ``Broadcast("redis://...")``, ``async with
  broadcast.subscribe(channel)``, ``ServerSentEvent(data=...).encode()`` per event and
  subscriber; ``await broadcast.publish(channel, payload)``;
- Litestar's channels plugin on ``RedisChannelsPubSubBackend`` (its default Redis backend),
  ``start_subscription`` + ``iter_events()``, ``ServerSentEventMessage(data=...).encode()``;
  ``plugin.publish(payload, channel)`` (it queues; a task of the plugin sends);
- a hand-written baseline on raw redis-py pub/sub: ``await redis.publish(channel, payload)``;
  each receiver runs one ``pubsub.listen()`` loop that encodes each message once with an
  f-string and puts the bytes on one ``asyncio.Queue`` per subscriber.

deliveries/s = E x S x R / (time the last subscriber got the last event - time of the first
send), on the host's monotonic clock, which all processes share. Latency is send to receipt
for every event of the first subscriber of each receiver. The CPU columns say where the time
goes: the receivers' CPU per delivery and the publisher's per event (from when each was
ready, imports excluded), and Redis's own per event (``INFO cpu``, over the same span).
Trials run in interleaved rounds
(the order rotates); the table shows medians. Results go to stdout; nothing is written.

broadcaster 0.3's Redis backend delivers nothing to a lone first subscriber with redis-py 8,
so every stack runs under redis-py < 8. Unless ``--python`` names an interpreter, the script
creates (once) a virtual environment at ``.venv/bench-redis`` with this package, ``redis<8``,
broadcaster, sse-starlette and Litestar, and runs the trials with it. Without ``--redis`` it
starts its own ``redis-server`` (found on PATH) on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

# This file is named redis.py: keep its folder off the import path so that ``import redis``
# (here and inside sse-channels) finds redis-py.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

ROOT = os.path.dirname(HERE)
BENCH_VENV = os.path.join(ROOT, ".venv", "bench-redis")
REQUIREMENTS = ["redis>=5,<8", "broadcaster>=0.3,<0.4", "sse-starlette>=2", "litestar>=2.8"]
STACKS = ["sse-channels", "broadcaster", "litestar", "baseline"]
TITLES = {
    "sse-channels": "sse-channels `RedisBackend`",
    "broadcaster": "sse-starlette over broadcaster (Redis)",
    "litestar": "Litestar channels (`RedisChannelsPubSubBackend`)",
    "baseline": "hand-written raw redis-py pub/sub",
}
#: Targets from the issue: sse-channels' deliveries/s at least this many times each row's.
TARGETS = {"broadcaster": 2.0, "litestar": 1.3, "baseline": 0.8}
#: After the 8-digit sequence number and the 19-digit send time: about 100 bytes of JSON.
FILLER = '{"user":"alice","action":"price-change","item":{"sku":"A-1042","price":19.99}}'


def payload(seq: int) -> str:
    return f"{seq:08d} {time.monotonic_ns():019d} {FILLER}"


class Check:
    """One subscriber's view: the next sequence number it must see, and its latencies."""

    def __init__(self, events: int, record: bool) -> None:
        self.events = events
        self.next = 0
        self.latencies: list[int] | None = [] if record else None
        self.error: str | None = None

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
        return self.next == self.events


# -- receivers (one process each) -------------------------------------------------------------


async def receive_ours(url: str, channel: str, checks: list[Check], prefix: str) -> None:
    from sse_channels import ChannelStore
    from sse_channels.backends.redis import RedisBackend

    events = checks[0].events
    store = ChannelStore(backend=RedisBackend(url, prefix=prefix), history=max(1000, events))

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


async def receive_broadcaster(url: str, channel: str, checks: list[Check], prefix: str) -> None:
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

    async with Broadcast(url) as broadcast, anyio.create_task_group() as group:
        for check in checks:
            group.start_soon(subscriber, broadcast, check)
        for _ in checks:
            await subscribed.acquire()
        ready()


async def receive_litestar(url: str, channel: str, checks: list[Check], prefix: str) -> None:
    from litestar.channels import ChannelsPlugin
    from litestar.channels.backends.redis import RedisChannelsPubSubBackend
    from litestar.response.sse import ServerSentEventMessage
    from redis.asyncio import Redis

    subscribed = anyio.Semaphore(0)

    async def subscriber(plugin: ChannelsPlugin, check: Check) -> None:
        async with plugin.start_subscription(channel) as subscription:
            subscribed.release()
            async for data in subscription.iter_events():
                text = data.decode() if isinstance(data, bytes) else str(data)
                assert ServerSentEventMessage(data=text).encode()
                if check.see(text):
                    return

    client = Redis.from_url(url)
    backend = RedisChannelsPubSubBackend(redis=client, key_prefix=prefix)
    plugin = ChannelsPlugin(backend=backend, channels=[channel], subscriber_max_backlog=None)
    async with plugin, anyio.create_task_group() as group:
        for check in checks:
            group.start_soon(subscriber, plugin, check)
        for _ in checks:
            await subscribed.acquire()
        ready()
    await client.aclose()


async def receive_baseline(url: str, channel: str, checks: list[Check], prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    while await pubsub.get_message(timeout=1) is None:  # the subscribe confirmation
        pass
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in checks]

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                chunk = f"data: {message['data'].decode()}\n\n".encode()
                for queue in queues:
                    queue.put_nowait(chunk)

    async def subscriber(queue: asyncio.Queue[bytes], check: Check) -> None:
        while True:
            chunk = await queue.get()
            if check.see(chunk[6:-2].decode()):
                return

    async with anyio.create_task_group() as group:
        group.start_soon(listen)
        ready()
        async with anyio.create_task_group() as readers:
            for queue, check in zip(queues, checks, strict=True):
                readers.start_soon(subscriber, queue, check)
        group.cancel_scope.cancel()
    # redis-py types PubSub.aclose from 8.2 on; through Any, mypy passes on older ones too.
    await cast("Any", pubsub).aclose()
    await client.aclose()


RECEIVERS = {
    "sse-channels": receive_ours,
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


def run_receiver(stack: str, url: str, channel: str, subscribers: int, events: int) -> None:
    checks = [Check(events, record=i == 0) for i in range(subscribers)]
    anyio.run(RECEIVERS[stack], url, channel, checks, f"bench-{channel}:")
    errors = [c.error for c in checks if c.error is not None]
    print(
        json.dumps(
            {
                "done": time.monotonic_ns(),
                "latencies": checks[0].latencies,
                "errors": errors,
                "cpu": time.process_time() - CPU_AT_START,
            }
        ),
        flush=True,
    )


# -- publishers (one process each) ------------------------------------------------------------


def started() -> int:
    """Note the CPU time at the first send; return the monotonic time of that send."""
    global CPU_AT_START
    CPU_AT_START = time.process_time()
    return time.monotonic_ns()


async def publish(stack: str, url: str, channel: str, events: int) -> int:
    """Send ``events`` payloads; return the monotonic time of the first send."""
    prefix = f"bench-{channel}:"
    first = time.monotonic_ns()
    if stack == "sse-channels":
        from sse_channels import ChannelStore
        from sse_channels.backends.redis import RedisBackend

        # Streams keep every event: like the pub/sub peers, nothing is trimmed under a reader
        # that the benchmark's own load slows down (that would be a gap, and a failed trial).
        backend = RedisBackend(url, prefix=prefix, maxlen=max(1000, events))
        async with ChannelStore(backend=backend) as store:
            first = started()
            for seq in range(events):
                await store.send(channel, payload(seq))
    elif stack == "broadcaster":
        from broadcaster import Broadcast

        async with Broadcast(url) as broadcast:
            first = started()
            for seq in range(events):
                await broadcast.publish(channel, payload(seq))
    elif stack == "litestar":
        from litestar.channels import ChannelsPlugin
        from litestar.channels.backends.redis import RedisChannelsPubSubBackend
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        channels = RedisChannelsPubSubBackend(redis=client, key_prefix=prefix)
        async with ChannelsPlugin(backend=channels, channels=[channel]) as plugin:
            first = started()
            for seq in range(events):
                plugin.publish(payload(seq), channel)
                await asyncio.sleep(0)  # let the plugin's publisher task send it
            await asyncio.sleep(1)  # it sends in the background: wait before leaving
        await client.aclose()
    else:
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        first = started()
        for seq in range(events):
            await client.publish(channel, payload(seq))
        await client.aclose()
    return first


def run_publisher(stack: str, url: str, channel: str, events: int) -> None:
    first = anyio.run(publish, stack, url, channel, events)
    print(
        json.dumps(
            {"first": first, "end": time.monotonic_ns(), "cpu": time.process_time() - CPU_AT_START}
        ),
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
    #: Redis's own CPU seconds per event (``INFO cpu``), over the same span.
    redis_cpu: float = 0.0


def redis_cpu(url: str) -> float:
    """Redis's CPU seconds so far (user + system), from ``INFO cpu`` over a plain socket."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 5) as s:
        if parts.password:
            user = urllib.parse.unquote(parts.username or "default")
            s.sendall(f"AUTH {user} {urllib.parse.unquote(parts.password)}\r\n".encode())
            if not s.recv(1024).startswith(b"+OK"):
                raise RuntimeError("AUTH refused")
        s.sendall(b"INFO cpu\r\n")
        reply = b""
        while True:  # a bulk string: "$<length>\r\n<length bytes>\r\n"
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("Redis closed the connection during INFO")
            reply += chunk
            head, found, body = reply.partition(b"\r\n")
            if found and len(body) >= int(head[1:]) + 2:
                break
    fields = dict(line.split(":", 1) for line in body.decode().splitlines() if ":" in line)
    return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])


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
    python: str, stack: str, url: str, subscribers: int, receivers: int, events: int, n: int
) -> Trial:
    channel = f"t{os.getpid()}-{n}"
    command = [python, os.path.abspath(__file__)]
    size = [str(subscribers), str(events)]
    children: list[subprocess.Popen[str]] = []
    try:
        for _ in range(receivers):
            children.append(
                subprocess.Popen(
                    [*command, "_receive", stack, url, channel, *size],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for child in children:
            read_line(child, 30)
        time.sleep(0.3)  # let every SUBSCRIBE reach Redis before the first PUBLISH
        redis_before = redis_cpu(url)
        publisher = subprocess.Popen(
            [*command, "_publish", stack, url, channel, str(events)],
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(publisher)
        timeout = 30 + events / 200
        results = [json.loads(read_line(child, timeout)) for child in children[:receivers]]
        sent = json.loads(read_line(publisher, timeout))
        redis_used = redis_cpu(url) - redis_before
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
    return Trial(
        deliveries / elapsed,
        latencies,
        None,
        receiver_cpu,
        sent["cpu"] / events,
        redis_used / events,
    )


def start_redis() -> tuple[str, subprocess.Popen[bytes], str]:
    if shutil.which("redis-server") is None:
        sys.exit("no redis-server on PATH: install it, or pass --redis URL")
    directory = tempfile.mkdtemp(prefix="sse-bench-redis-")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return url, server, directory
        time.sleep(0.025)
    server.kill()
    sys.exit("redis-server did not start")


def bench_python(explicit: str | None) -> str:
    """The interpreter that runs the trials (see the module docstring)."""
    if explicit:
        return explicit
    python = os.path.join(BENCH_VENV, "bin", "python")
    if not os.path.exists(python):
        print(f"creating {BENCH_VENV} with {', '.join(REQUIREMENTS)} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", BENCH_VENV], check=True)
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "-e", ROOT, *REQUIREMENTS], check=True
        )
    return python


def versions(python: str) -> dict[str, str]:
    code = (
        "import json; from importlib import metadata as m; print(json.dumps({d: m.version(d) "
        "for d in ('sse-channels', 'redis', 'broadcaster', 'sse-starlette', 'litestar')}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def server_version(url: str, python: str) -> str:
    code = f"import redis; print(redis.Redis.from_url({url!r}).info('server')['redis_version'])"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}"


def report(
    results: dict[tuple[str, int], list[Trial]], args: argparse.Namespace, meta: dict[str, str]
) -> list[str]:
    lines: list[str] = []
    lines.append(
        f"CPython {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; Redis {meta['server']}; redis-py {meta['redis']}, "
        f"sse-channels {meta['sse-channels']}, broadcaster {meta['broadcaster']}, "
        f"sse-starlette {meta['sse-starlette']}, Litestar {meta['litestar']}. "
        f"{args.events:,} events, {args.receivers} receiver processes, "
        f"median of {args.rounds} rounds."
    )
    verdicts: list[str] = []
    for subscribers in args.subscribers:
        lines += [
            "",
            f"**{subscribers} subscriber(s) per receiver** ({subscribers * args.receivers} in all)",
            "",
            "| Stack | deliveries/s | latency p50 (ms) | p99 (ms) | receiver CPU µs/delivery "
            "| publisher CPU µs/event | Redis CPU µs/event | sse-channels ÷ this |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        medians: dict[str, float | None] = {}
        for stack in STACKS:
            trials = results[(stack, subscribers)]
            good = [t for t in trials if t.rate is not None]
            if len(good) < len(trials):
                failed = next(t.error for t in trials if t.rate is None)
                lines.append(f"| {TITLES[stack]} | FAILED ({failed}) | | | | | | |")
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
            server_cpu = statistics.median(t.redis_cpu for t in good) * 1e6
            lines.append(
                f"| {TITLES[stack]} | {rate:,.0f} | {_ms(p50)} | {_ms(p99)} "
                f"| {receiver_cpu:.1f} | {publisher_cpu:.1f} | {server_cpu:.1f} | {times} |"
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


#: The figures of one stack and size, for ``--json``: label, unit, which way is better.
FIGURES = [
    ("deliveries/s", "deliveries/s", "higher"),
    ("latency p50 ms", "ms", "lower"),
    ("latency p99 ms", "ms", "lower"),
    ("receiver CPU µs/delivery", "µs", "lower"),
    ("publisher CPU µs/event", "µs", "lower"),
    ("Redis CPU µs/event", "µs", "lower"),
]


def _medians(trials: list[Trial]) -> list[float]:
    """The values of FIGURES, in its order, for trials that all succeeded."""
    latencies = sorted(ns for t in trials for ns in t.latencies)
    return [
        statistics.median(t.rate or 0.0 for t in trials),
        latencies[len(latencies) // 2] / 1e6,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e6,
        statistics.median(t.receiver_cpu for t in trials) * 1e6,
        statistics.median(t.publisher_cpu for t in trials) * 1e6,
        statistics.median(t.redis_cpu for t in trials) * 1e6,
    ]


def figures(
    results: dict[tuple[str, int], list[Trial]], stacks: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every median as a machine-readable figure (``--json``; see benchmarks/compare.py)."""
    out: list[dict[str, Any]] = []
    for subscribers in args.subscribers:
        for stack in stacks:
            trials = results[(stack, subscribers)]
            error = next((t.error or "failed" for t in trials if t.rate is None), None)
            values: list[float | None] = [None] * len(FIGURES) if error else [*_medians(trials)]
            for (label, unit, better), value in zip(FIGURES, values, strict=True):
                out.append(
                    {
                        "name": f"{stack}: {subscribers} subscriber(s) per receiver, {label}",
                        "value": value,
                        "unit": unit,
                        "better": better,
                        "ours": stack == "sse-channels",
                        "error": error,
                    }
                )
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_receive":
        stack, url, channel, subscribers, events = argv[1:]
        run_receiver(stack, url, channel, int(subscribers), int(events))
        return
    if argv and argv[0] == "_publish":
        stack, url, channel, events = argv[1:]
        run_publisher(stack, url, channel, int(events))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events per trial")
    parser.add_argument(
        "--subscribers",
        type=int,
        nargs="+",
        default=[1, 10, 100],
        help="subscribers per receiver process; one table each",
    )
    parser.add_argument("--receivers", type=int, default=2, help="receiver processes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", help="a Redis URL (default: start a private redis-server)")
    parser.add_argument("--python", help="interpreter for the trials (default: see above)")
    parser.add_argument("--only", nargs="+", choices=STACKS, help="run only these stacks")
    parser.add_argument(
        "--json", action="store_true", help="print the medians as one JSON object, not tables"
    )
    args = parser.parse_args(argv)
    python = bench_python(args.python)
    server: subprocess.Popen[bytes] | None = None
    directory = None
    url = args.redis
    if url is None:
        url, server, directory = start_redis()
    try:
        meta = versions(python) | {"server": server_version(url, python)}
        stacks = args.only or STACKS
        results: dict[tuple[str, int], list[Trial]] = {}
        n = 0
        for subscribers in args.subscribers:
            for round_ in range(args.rounds):
                order = stacks[round_ % len(stacks) :] + stacks[: round_ % len(stacks)]
                for stack in order:
                    n += 1
                    outcome = trial(python, stack, url, subscribers, args.receivers, args.events, n)
                    results.setdefault((stack, subscribers), []).append(outcome)
                    shown = f"{outcome.rate:,.0f}/s" if outcome.rate else outcome.error
                    print(f"  {subscribers:>4} subs {stack:<13} {shown}", file=sys.stderr)
        for stack in STACKS:
            for subscribers in args.subscribers:
                results.setdefault((stack, subscribers), [Trial(None, error="not run")])
        if args.json:
            print(json.dumps({"script": "redis", "figures": figures(results, stacks, args)}))
            return
        print("\n".join(report(results, args, meta)))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
