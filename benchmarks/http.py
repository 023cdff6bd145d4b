"""One SSE endpoint under uvicorn, K clients in another process, the server publishing M events.

Run from a clone with the peers installed::

    .venv/bin/python -m pip install -e ".[bench]"
    .venv/bin/python benchmarks/http.py [--clients 100 1000] [--deliveries N] [--rounds R]
                                        [--quick] [--pin]

Each contender is a small app served by uvicorn (its defaults: asyncio, h11 unless
httptools is installed) in its own process, with one ``GET /events`` stream endpoint and a
``POST /publish?m=M`` endpoint that publishes M events in a loop, yielding to the event
loop after each (``await asyncio.sleep(0)``), as a busy app would:

- ``sse-channels``: ``SSEApp(store, "news")`` (``EventStreamResponse``: everything pending
  in one write), ``await store.send("news", payload)``;
- ``sse-channels (Starlette)``: ``SSEResponse(store.subscribe("news"))`` from a Starlette
  route, the same engine behind Starlette's routing;
- ``sse-starlette + broadcaster``: ``EventSourceResponse`` over a generator reading
  ``Broadcast("memory://").subscribe("news")``, ``await broadcast.publish(...)``;
- ``Litestar``: its ``ServerSentEvent`` response over a generator reading the channels
  plugin (``MemoryChannelsBackend``), ``channels.publish(...)``;
- ``raw ASGI``: a hand-written ASGI app, one ``asyncio.Queue`` per connection, one
  ``http.response.body`` message per event.

A separate client process (plain asyncio sockets) holds K connections, waits until the
server reports K subscribers, and counts every event on every connection, checking that
each connection gets all M in order. Each payload carries the server's
``time.monotonic()`` at publish time (the clock is system-wide), so the client measures the
latency of every delivery. Reported per contender and K (median of the rounds, which are
interleaved): deliveries/s (K*M over the time from the first publish to the last event
received), deliveries per CPU-second of the server process (steadier than deliveries/s
when other work shares the machine: it counts only the time the server actually ran), p50
and p99 latency, server and client CPU use (CPU seconds per wall second, so 1.0 is one full
core). On 2 cores the client can be the limit: compare its CPU figure. ``--pin`` keeps the
server on CPU 0 and the client on CPU 1, so that the kernel never puts both on one core for
part of a trial (steadier latency figures on an otherwise idle machine).

Prints markdown tables to stdout and writes nothing.
"""

from __future__ import annotations

import os
import sys

# Run as ``python benchmarks/http.py``, this directory comes first on sys.path and this file
# would shadow the standard library's ``http`` package: take the directory off first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import contextlib
import json
import platform
import resource
import socket
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

CONTENDERS = [
    "sse-channels",
    "sse-channels (Starlette)",
    "sse-starlette + broadcaster",
    "Litestar",
    "raw ASGI",
]
HOST = "127.0.0.1"


# -- the servers ---------------------------------------------------------------------------


def query_int(scope: dict[str, Any], name: str, default: int) -> int:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode()).get(name)
    return int(values[0]) if values else default


async def reply(send: Any, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(text))],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


def payload(i: int) -> str:
    return f"{i} {time.monotonic():.6f}"


def sse_channels_app() -> Any:
    from sse_channels import ChannelStore
    from sse_channels.asgi import SSEApp

    store = ChannelStore(history=100_000)
    stream = SSEApp(store, "news")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" or scope["path"] == "/events":
            await stream(scope, receive, send)
        elif scope["path"] == "/subscribers":
            await reply(send, str(store.statistics().subscribers))
        elif scope["path"] == "/publish":
            began = time.monotonic()
            for i in range(query_int(scope, "m", 100)):
                await store.send("news", payload(i))
                await asyncio.sleep(0)
            await reply(send, f"{time.monotonic() - began:.6f}")

    return app


def sse_channels_starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from sse_channels import ChannelStore
    from sse_channels.starlette import SSEResponse

    store = ChannelStore(history=100_000)

    async def events(request: Request) -> SSEResponse:
        return SSEResponse(store.subscribe("news"))

    async def subscribers(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(store.statistics().subscribers))

    async def publish(request: Request) -> PlainTextResponse:
        began = time.monotonic()
        for i in range(int(request.query_params.get("m", "100"))):
            await store.send("news", payload(i))
            await asyncio.sleep(0)
        return PlainTextResponse(f"{time.monotonic() - began:.6f}")

    return Starlette(
        routes=[
            Route("/events", events),
            Route("/subscribers", subscribers),
            Route("/publish", publish, methods=["POST"]),
        ]
    )


def sse_starlette_app() -> Any:
    from contextlib import asynccontextmanager

    from broadcaster import Broadcast
    from sse_starlette.sse import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    broadcast = Broadcast("memory://")
    count = [0]

    async def stream() -> AsyncIterator[dict[str, str]]:
        async with broadcast.subscribe("news") as subscriber:
            count[0] += 1
            try:
                async for event in subscriber:  # type: ignore[union-attr]
                    yield {"data": event.message}  # type: ignore[union-attr]
            finally:
                count[0] -= 1

    async def events(request: Request) -> EventSourceResponse:
        return EventSourceResponse(stream())

    async def subscribers(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(count[0]))

    async def publish(request: Request) -> PlainTextResponse:
        began = time.monotonic()
        for i in range(int(request.query_params.get("m", "100"))):
            await broadcast.publish("news", payload(i))
            await asyncio.sleep(0)
        return PlainTextResponse(f"{time.monotonic() - began:.6f}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with broadcast:
            yield

    return Starlette(
        routes=[
            Route("/events", events),
            Route("/subscribers", subscribers),
            Route("/publish", publish, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def litestar_app() -> Any:

    from litestar import Litestar, get, post
    from litestar.channels import ChannelsPlugin
    from litestar.channels.backends.memory import MemoryChannelsBackend
    from litestar.response import ServerSentEvent

    plugin = ChannelsPlugin(backend=MemoryChannelsBackend(), channels=["news"])
    count = [0]

    async def stream() -> AsyncIterator[bytes]:
        async with plugin.start_subscription(["news"]) as subscriber:
            count[0] += 1
            try:
                async for message in subscriber.iter_events():
                    yield message
            finally:
                count[0] -= 1

    @get("/events")
    async def events() -> ServerSentEvent:
        return ServerSentEvent(stream())

    @get("/subscribers")
    async def subscribers() -> str:
        return str(count[0])

    @post("/publish", status_code=200)
    async def publish(m: int = 100) -> str:
        began = time.monotonic()
        for i in range(m):
            plugin.publish(payload(i), "news")
            await asyncio.sleep(0)
        return f"{time.monotonic() - began:.6f}"

    return Litestar(
        [events, subscribers, publish],
        plugins=[plugin],
        logging_config=None,
        # This module's annotations are strings; Litestar resolves them at startup.
        signature_namespace={"ServerSentEvent": ServerSentEvent},
    )


def raw_asgi_app() -> Any:
    queues: set[asyncio.Queue[bytes]] = set()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        elif scope["path"] == "/events":
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            queues.add(queue)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")],
                    }
                )
                while True:
                    data = await queue.get()
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            finally:
                queues.discard(queue)
        elif scope["path"] == "/subscribers":
            await reply(send, str(len(queues)))
        elif scope["path"] == "/publish":
            began = time.monotonic()
            for i in range(query_int(scope, "m", 100)):
                data = f"data: {payload(i)}\n\n".encode()
                for queue in queues:
                    queue.put_nowait(data)
                await asyncio.sleep(0)
            await reply(send, f"{time.monotonic() - began:.6f}")

    return app


APPS = {
    "sse-channels": sse_channels_app,
    "sse-channels (Starlette)": sse_channels_starlette_app,
    "sse-starlette + broadcaster": sse_starlette_app,
    "Litestar": litestar_app,
    "raw ASGI": raw_asgi_app,
}


def serve(name: str, fd: int) -> None:
    import uvicorn

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        APPS[name](), log_level="warning", access_log=False, backlog=4096, lifespan="auto"
    )
    uvicorn.Server(config).run(sockets=[sock])


# -- the client ----------------------------------------------------------------------------


async def client(port: int, k: int, m: int, timeout: float) -> dict[str, Any]:
    latencies: list[float] = []
    received = [0]
    wrong = [0]
    last = [0.0]
    done = asyncio.Event()
    total = k * m
    ready = [0]
    all_ready = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        writers.append(writer)
        writer.write(
            f"GET /events HTTP/1.1\r\nhost: {HOST}\r\naccept: text/event-stream\r\n\r\n".encode()
        )
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("closed before the headers")
            buffer += chunk
        buffer = buffer.split(b"\r\n\r\n", 1)[1]
        ready[0] += 1
        if ready[0] == k:
            all_ready.set()
        expected = 0
        while expected < m:
            start = 0
            while True:
                at = buffer.find(b"data: ", start)
                if at < 0:
                    break
                end = buffer.find(b"\n", at)
                if end < 0:
                    break
                now = time.monotonic()
                number, stamp = buffer[at + 6 : end].split()
                if int(number) != expected:
                    wrong[0] += 1
                expected = int(number) + 1
                latencies.append(now - float(stamp))
                received[0] += 1
                start = end + 1
            buffer = buffer[start:] if start else buffer
            if expected >= m:
                break
            chunk = await reader.read(65536)
            if not chunk:
                break
            buffer += chunk
        last[0] = max(last[0], time.monotonic())
        if received[0] >= total:
            done.set()

    tasks = []
    for _ in range(k):
        tasks.append(asyncio.ensure_future(connection()))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.01)  # do not overrun the listen backlog
    await asyncio.wait_for(all_ready.wait(), 60)
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    assert line.strip() == "go", line
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.monotonic()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(done.wait(), timeout)
    ended = time.monotonic()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for task in tasks:
        task.cancel()
    for writer in writers:
        writer.close()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    latencies.sort()
    return {
        "received": received[0],
        "expected": total,
        "out_of_order": wrong[0],
        "last": last[0],
        "began": began,
        "client_cpu": cpu / max(ended - began, 1e-9),
        "p50": latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
    }


# -- the orchestrator ----------------------------------------------------------------------


@dataclass
class Result:
    name: str
    k: int
    m: int
    rate: float
    p50: float
    p99: float
    server_cpu: float
    client_cpu: float
    ok: bool


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http(method: str, port: int, path: str) -> str:
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", method=method)
    with urllib.request.urlopen(request, timeout=120) as response:
        return str(response.read().decode())


def run_one(name: str, k: int, m: int, timeout: float, pin: bool = False) -> Result:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(4096)
    port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "benchmarks.http", "--serve", name),
            *("--fd", str(sock.fileno()), *(("--cpu", "0") if pin else ())),
        ],
        pass_fds=[sock.fileno()],
        cwd=here,
    )
    sock.close()
    client_process: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                http("GET", port, "/subscribers")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client_process = subprocess.Popen(
            [
                *(sys.executable, "-m", "benchmarks.http", "--client"),
                *(str(port), str(k), str(m), "--timeout", str(timeout)),
                *(("--cpu", "1") if pin else ()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=here,
        )
        assert client_process.stdout is not None
        assert client_process.stdin is not None
        assert client_process.stdout.readline().strip() == "ready"
        while int(http("GET", port, "/subscribers")) < k:
            time.sleep(0.02)
        time.sleep(0.2)
        cpu_before = cpu_seconds(server.pid)
        client_process.stdin.write("go\n")
        client_process.stdin.flush()
        began = time.monotonic()
        http("POST", port, f"/publish?m={m}")
        report = json.loads(client_process.stdout.readline())
        wall = max(report["last"] - began, 1e-9)
        server_cpu = (cpu_seconds(server.pid) - cpu_before) / wall
        ok = report["received"] == report["expected"] and report["out_of_order"] == 0
        return Result(
            name,
            k,
            m,
            report["received"] / wall,
            report["p50"],
            report["p99"],
            server_cpu,
            report["client_cpu"],
            ok,
        )
    finally:
        for process in (client_process, server):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def figures(
    results: dict[tuple[str, int], list[Result]], names: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every median as a machine-readable figure (``--json``; see benchmarks/compare.py)."""
    out: list[dict[str, Any]] = []
    for k in args.clients:
        m = max(1, args.deliveries // k)
        for name in names:
            runs = results[(name, k)]
            error = None if all(r.ok for r in runs) else "incomplete: events lost or out of order"
            values = [
                ("deliveries/s", "deliveries/s", statistics.median(r.rate for r in runs)),
                (
                    "deliveries per server CPU-second",
                    "deliveries/CPU-s",
                    statistics.median(r.rate / max(r.server_cpu, 1e-9) for r in runs),
                ),
                ("p50 latency ms", "ms", statistics.median(r.p50 for r in runs) * 1e3),
                ("p99 latency ms", "ms", statistics.median(r.p99 for r in runs) * 1e3),
            ]
            for label, unit, value in values:
                out.append(
                    {
                        "name": f"{name}: K={k} M={m} {label}",
                        "value": None if error else value,
                        "unit": unit,
                        "better": "lower" if unit == "ms" else "higher",
                        "ours": name.startswith("sse-channels"),
                        "error": error,
                    }
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve")
    parser.add_argument("--fd", type=int)
    parser.add_argument("--client", nargs=3, type=int, metavar=("PORT", "K", "M"))
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--clients", nargs="+", type=int, default=[100, 1000])
    parser.add_argument("--deliveries", type=int, default=200_000, help="K*M per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=CONTENDERS)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run the server on CPU 0 and the client on CPU 1 (steadier figures on an "
        "otherwise idle machine with 2 or more CPUs; worse on a busy one)",
    )
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)  # set by --pin for each side
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the medians as one JSON object instead of the tables",
    )
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.pin and (os.cpu_count() or 1) < 2:
        parser.error("--pin needs 2 CPUs or more")
    if args.serve:
        serve(args.serve, args.fd)
        return
    if args.client:
        port, k, m = args.client
        print(json.dumps(asyncio.run(client(port, k, m, args.timeout))), flush=True)
        return
    if args.quick:
        args.clients, args.deliveries, args.rounds = [20], 2000, 1
    names = args.only or CONTENDERS
    print(
        f"Python {platform.python_version()} on {platform.system()}, {os.cpu_count()} CPUs; "
        f"uvicorn {version('uvicorn')}, starlette {version('starlette')}, "
        f"sse-starlette {version('sse-starlette')}, broadcaster {version('broadcaster')}, "
        f"litestar {version('litestar')}; h11 {version('h11')}, "
        f"httptools {version('httptools')}, uvloop {version('uvloop')}\n",
        file=sys.stderr if args.json else sys.stdout,
    )
    results: dict[tuple[str, int], list[Result]] = {}
    for round_number in range(args.rounds):
        for k in args.clients:
            m = max(1, args.deliveries // k)
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for name in order:
                result = run_one(name, k, m, args.timeout, args.pin)
                results.setdefault((name, k), []).append(result)
                print(
                    f"  round {round_number + 1} K={k} M={m} {name}: {result.rate:,.0f}/s "
                    f"p99 {result.p99 * 1000:.1f} ms{'' if result.ok else ' INCOMPLETE'}",
                    file=sys.stderr,
                )
    if args.json:
        print(json.dumps({"script": "http", "figures": figures(results, names, args)}))
        return
    for k in args.clients:
        m = max(1, args.deliveries // k)
        print(f"### K = {k} connections, M = {m} events ({k * m:,} deliveries)\n")
        print(
            "| contender | deliveries/s | vs raw ASGI | per server CPU-second | vs raw ASGI "
            "| p50 latency | p99 latency | server CPU | client CPU |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        rows = {}
        for name in names:
            runs = results[(name, k)]
            rows[name] = (
                statistics.median(r.rate for r in runs),
                statistics.median(r.rate / max(r.server_cpu, 1e-9) for r in runs),
                statistics.median(r.p50 for r in runs),
                statistics.median(r.p99 for r in runs),
                statistics.median(r.server_cpu for r in runs),
                statistics.median(r.client_cpu for r in runs),
                all(r.ok for r in runs),
            )
        nan = float("nan")
        base, base_cpu = rows.get("raw ASGI", (nan, nan))[:2]
        for name, (rate, per_cpu, p50, p99, server_cpu, client_cpu, ok) in rows.items():
            flag = "" if ok else " (incomplete)"
            print(
                f"| {name}{flag} | {rate:,.0f} | {rate / base:.2f}x | {per_cpu:,.0f} "
                f"| {per_cpu / base_cpu:.2f}x | {p50 * 1000:.1f} ms | {p99 * 1000:.1f} ms "
                f"| {server_cpu:.2f} | {client_cpu:.2f} |"
            )
        print()


if __name__ == "__main__":
    main()
