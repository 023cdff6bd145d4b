"""How many SSE connections one uvicorn process holds, and what one broadcast to all costs.

Run from a clone with the peers installed::

    .venv/bin/python -m pip install -e ".[bench]"
    .venv/bin/python benchmarks/capacity.py [--connections 5000 15000] [--broadcasts 30]
                                            [--only NAME ...] [--quick]

For each contender and each K, a fresh uvicorn process (its defaults: asyncio, h11 unless
httptools is installed) serves one ``GET /events`` stream on the memory backend, and a
``POST /publish?m=1`` that sends one event to every stream. The contenders are the apps of
``benchmarks/http.py``:

- ``sse-channels``: ``SSEApp(store, "news")`` with its default options (heartbeats, the
  write deadline and disconnect detection on);
- ``sse-starlette + broadcaster``: ``EventSourceResponse`` over ``Broadcast("memory://")``;
- ``Litestar``: its ``ServerSentEvent`` over the channels plugin (memory backend);
- ``raw ASGI``: a hand-written app, one ``asyncio.Queue`` per connection, no library (and
  no disconnect detection, no heartbeat: the floor).

A driver in its own process opens K connections with raw non-blocking sockets and
``selectors`` (both processes raise ``RLIMIT_NOFILE`` to the hard limit), waits until the
server reports K subscribers, then asks for M broadcasts, one at a time: each is published
when every connection has the one before. Each payload carries the server's
``time.monotonic()`` at publish time (the clock is system-wide), so the driver measures the
delivery latency of every event on every connection. Reported per contender and K:

- RSS per connection: (RSS with K connections open and idle - RSS before any) / K, from
  ``/proc/<pid>/status``; and the same after the broadcasts (``after``);
- delivery latency of one broadcast, over all K x M deliveries: p50, p99 and max (the max
  is the slowest broadcast's time to reach every connection);
- the server's CPU time per broadcast, and the seconds it took to accept the K connections.

Prints markdown tables to stdout and writes nothing. A 15,000-connection run takes a few
minutes per contender; ``--quick`` is a smoke run (200 connections, 3 broadcasts).
"""

from __future__ import annotations

import os
import sys

# Run as ``python benchmarks/capacity.py``, this directory comes first on sys.path and its
# http.py would shadow the standard library's ``http`` package: take the directory off.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import importlib.util
import json
import platform
import re
import resource
import selectors
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CONTENDERS = ["sse-channels", "Litestar", "sse-starlette + broadcaster", "raw ASGI"]
PEERS = {"sse-starlette + broadcaster", "Litestar"}
HOST = "127.0.0.1"
DATA = re.compile(rb"data: \d+ (\d+\.\d+)")


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def http_apps() -> Any:
    """benchmarks/http.py, loaded by path (its name would shadow the stdlib's ``http``)."""
    spec = importlib.util.spec_from_file_location("bench_http", os.path.join(HERE, "http.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_http"] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


# -- the server ----------------------------------------------------------------------------


def serve(name: str, fd: int, freeze: bool) -> None:
    import gc

    import uvicorn

    raise_nofile()
    inner = http_apps().APPS[name]()
    # The garbage collector's passes, timed: full passes over every connection's objects
    # are what stretches a broadcast's tail. ``GET /gc`` answers [passes, seconds] per
    # generation; everything else goes to the contender's app.
    passes = [[0, 0.0] for _ in range(3)]
    began = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            passes[info["generation"]][0] += 1
            passes[info["generation"]][1] += time.perf_counter() - began[0]

    gc.callbacks.append(timed)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/gc":
            text = json.dumps(passes)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"%d" % len(text))],
                }
            )
            await send({"type": "http.response.body", "body": text.encode()})
            return
        await inner(scope, receive, send)

    if freeze:
        gc.freeze()  # what is alive now (modules, the app) is never scanned again
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, backlog=4096, lifespan="auto"
    )
    uvicorn.Server(config).run(sockets=[sock])


# -- the driver ----------------------------------------------------------------------------


def request(port: int, method: str, path: str) -> str:
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    _, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return body.decode()


def wait_subscribers(port: int, k: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while int(request(port, "GET", "/subscribers") or 0) < k:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {k} subscribers after {timeout} s")
        time.sleep(0.1)


def drive(port: int, k: int, m: int) -> None:
    """The driver process: K streams, then M broadcasts; talks JSON lines on stdio."""
    raise_nofile()
    selector = selectors.DefaultSelector()
    get = f"GET /events HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n".encode()
    socks: list[socket.socket] = []
    began = time.monotonic()
    # Connect in batches no larger than the listen backlog; each batch is in (its response
    # head read) before the next starts.
    batch = 500
    for start in range(0, k, batch):
        pending: dict[int, socket.socket] = {}
        for _ in range(min(batch, k - start)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.connect((HOST, port))
            sock.sendall(get)
            sock.setblocking(False)
            pending[sock.fileno()] = sock
            selector.register(sock, selectors.EVENT_READ, len(socks))
            socks.append(sock)
        heads: dict[int, bytes] = {}
        deadline = time.monotonic() + 60
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} streams got no response head")
            for key, _ in selector.select(timeout=1):
                sock = key.fileobj  # type: ignore[assignment]
                if sock.fileno() not in pending:
                    sock.recv(65536)
                    continue
                heads[sock.fileno()] = heads.get(sock.fileno(), b"") + sock.recv(65536)
                head = heads[sock.fileno()]
                if b"\r\n\r\n" in head:
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"refused: {head[:80]!r}")
                    del pending[sock.fileno()]
    wait_subscribers(port, k, timeout=120)
    connected = time.monotonic() - began
    print(json.dumps({"connected": connected}), flush=True)
    sys.stdin.readline()  # the parent has read the server's RSS

    counts = [0] * k
    tails = [b""] * k
    latencies: list[float] = []
    lost = 0
    cpu_began = time.process_time()
    for number in range(1, m + 1):
        publish = socket.create_connection((HOST, port))
        publish.sendall(
            f"POST /publish?m=1 HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        publish.setblocking(False)
        selector.register(publish, selectors.EVENT_READ, -1)
        waiting = k
        deadline = time.monotonic() + 60
        while waiting:
            if time.monotonic() > deadline:
                lost += waiting
                break
            ready = selector.select(timeout=1)
            now = time.monotonic()
            for key, _ in ready:
                index = key.data
                sock = key.fileobj  # type: ignore[assignment]
                data = sock.recv(65536)
                if index < 0:
                    if not data:
                        selector.unregister(sock)
                        sock.close()
                    continue
                text = tails[index] + data
                cut = text.rfind(b"\n") + 1  # whole lines (sse-starlette ends them with CRLF)
                tails[index] = text[cut:]
                for found in DATA.finditer(text, 0, cut):
                    latencies.append(now - float(found.group(1)))
                    counts[index] += 1
                    if counts[index] == number:
                        waiting -= 1
        with_publish = [key for key in selector.get_map().values() if key.data == -1]
        for key in with_publish:
            selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
    wrong = sum(1 for count in counts if count != m)
    print(
        json.dumps(
            {
                "latencies": latencies,
                "lost": lost,
                "wrong": wrong,
                "driver_cpu": time.process_time() - cpu_began,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()
    for sock in socks:
        sock.close()


# -- the parent ----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    k: int
    rss_before: int
    rss_idle: int
    rss_after: int
    gc_passes: list[list[float]]
    connected: float
    latencies: list[float]
    server_cpu: float
    driver_cpu: float
    m: int
    lost: int
    wrong: int

    def per_connection(self, rss: int) -> float:
        return (rss - self.rss_before) / self.k / 1024

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(name: str, k: int, m: int, freeze: bool) -> Result:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--serve",
            name,
            str(listener.fileno()),
            "freeze" if freeze else "",
        ],
        pass_fds=[listener.fileno()],
    )
    listener.close()
    driver = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request(port, "GET", "/subscribers")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        time.sleep(0.5)
        before = rss(server.pid)
        driver = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--drive", str(port), str(k), str(m)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert driver.stdin is not None
        assert driver.stdout is not None
        connected = json.loads(driver.stdout.readline())["connected"]
        time.sleep(1.0)
        idle = rss(server.pid)
        cpu = cpu_seconds(server.pid)
        gc_before = json.loads(request(port, "GET", "/gc"))
        driver.stdin.write("go\n")
        driver.stdin.flush()
        report = json.loads(driver.stdout.readline())
        server_cpu = cpu_seconds(server.pid) - cpu
        gc_after = json.loads(request(port, "GET", "/gc"))
        gc_passes = [[a[0] - b[0], a[1] - b[1]] for a, b in zip(gc_after, gc_before, strict=True)]
        after = rss(server.pid)
        driver.stdin.write("done\n")
        driver.stdin.flush()
        driver.wait(timeout=60)
        return Result(
            name,
            k,
            before,
            idle,
            after,
            gc_passes,
            connected,
            report["latencies"],
            server_cpu,
            report["driver_cpu"],
            m,
            report["lost"],
            report["wrong"],
        )
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "freeze")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[5000, 15000])
    parser.add_argument("--broadcasts", type=int, default=30)
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=CONTENDERS)
    parser.add_argument(
        "--freeze", action="store_true", help="gc.freeze() in every server after start-up"
    )
    parser.add_argument("--quick", action="store_true", help="200 connections, 3 broadcasts")
    args = parser.parse_args()
    if args.quick:
        args.connections, args.broadcasts = [200], 3
    limit = raise_nofile()
    if max(args.connections) + 100 > limit:
        sys.exit(f"RLIMIT_NOFILE's hard limit is {limit}: too low for {max(args.connections)}")
    contenders = []
    for name in args.only:
        needs = {"sse-starlette + broadcaster": "sse-starlette", "Litestar": "litestar"}
        if name in needs and version(needs[name]) == "missing":
            print(f"skipped {name}: {needs[name]} is not installed", file=sys.stderr)
            continue
        contenders.append(name)

    print(
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, uvicorn {version('uvicorn')}, h11 {version('h11')}, "
        f"httptools {version('httptools')}; sse-channels {version('sse-channels')}, "
        f"sse-starlette {version('sse-starlette')}, broadcaster {version('broadcaster')}, "
        f"litestar {version('litestar')}. RLIMIT_NOFILE {limit}; M = {args.broadcasts} "
        f"broadcasts{'; gc.freeze() after start-up' if args.freeze else ''}."
    )
    for k in args.connections:
        results = []
        for name in contenders:
            print(f"... {name}, {k} connections", file=sys.stderr, flush=True)
            results.append(run_one(name, k, args.broadcasts, args.freeze))
        print(f"\n### {k:,} connections\n")
        print(
            "| contender | RSS per connection | after the broadcasts | p50 | p99 | max "
            "| server CPU per broadcast | full GC passes | accepting K | complete |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            complete = "yes" if not r.lost and not r.wrong else f"NO: {r.lost} lost"
            print(
                f"| {r.name} | {r.per_connection(r.rss_idle):.1f} KiB "
                f"| {r.per_connection(r.rss_after):.1f} KiB "
                f"| {r.quantile(0.5) * 1000:,.0f} ms | {r.quantile(0.99) * 1000:,.0f} ms "
                f"| {max(r.latencies, default=float('nan')) * 1000:,.0f} ms "
                f"| {r.server_cpu / r.m * 1000:,.0f} ms "
                f"| {r.gc_passes[2][0]:.0f}, {r.gc_passes[2][1] * 1000:,.0f} ms "
                f"| {r.connected:.1f} s | {complete} |"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
