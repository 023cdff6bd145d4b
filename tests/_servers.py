"""Real servers for tests: uvicorn (asyncio) or hypercorn (trio or asyncio) on a free loopback port.

Shared by every test that needs a real HTTP server (the ASGI core, the framework helpers,
the demo). Two ways to run one:

- ``serve_in_thread(app, server=...)``: in a thread of this process, so a test can look inside
  (``server.call(fn)`` runs ``fn`` in the server's event loop: read store statistics, count
  tasks, send events). The listening socket is bound before the server starts, so there is
  no port race.
- ``serve_in_subprocess("module:app", server=...)``: its own process, for what only a process
  can show (signals, shutdown). The socket is inherited as a file descriptor.

``server_for(anyio_backend)`` picks the pairing the suite uses: uvicorn for asyncio,
hypercorn for trio; the fixtures ``server_kind`` (that pairing) and ``serve`` (``with
serve(app) as server``: ``serve_in_thread`` on it) are registered for every test by
conftest.py. ``streaming(server, path)`` opens a stream and closes it on the way out,
however the test ends. ``RawHTTPStream`` is a minimal HTTP/1.1 client over anyio sockets that
decodes a chunked event stream as it arrives (works on asyncio and trio).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from sse_channels import Event, SSEDecoder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

__all__ = [
    "RawHTTPStream",
    "RunningServer",
    "Serve",
    "ServerProcess",
    "free_socket",
    "open_stream",
    "read_sse_then_leave",
    "serve",
    "serve_in_subprocess",
    "serve_in_thread",
    "server_for",
    "server_kind",
    "streaming",
    "task_count",
]

T = TypeVar("T")
ServerName = Literal["uvicorn", "hypercorn", "granian"]
HERE = os.path.dirname(os.path.abspath(__file__))


def server_for(anyio_backend: str) -> tuple[ServerName, str]:
    """The server and event loop the suite pairs with a test's anyio backend."""
    return ("hypercorn", "trio") if anyio_backend == "trio" else ("uvicorn", "asyncio")


@pytest.fixture
def server_kind(anyio_backend: str) -> tuple[ServerName, str]:
    """The test's server and event loop: ``server_for(anyio_backend)``."""
    return server_for(anyio_backend)


#: What the ``serve`` fixture gives: ``serve(app, **options)``, a context manager.
Serve: TypeAlias = "Callable[..., contextlib.AbstractContextManager[RunningServer]]"


@pytest.fixture
def serve(server_kind: tuple[ServerName, str]) -> Serve:
    """``with serve(app, **options) as server``: ``serve_in_thread`` on the test's server."""
    server_name, backend = server_kind

    def start(app: Any, **options: Any) -> contextlib.AbstractContextManager[RunningServer]:
        return serve_in_thread(app, server=server_name, backend=backend, **options)

    return start


def free_socket(host: str = "127.0.0.1", *, sndbuf: int | None = None) -> socket.socket:
    """A listening TCP socket on a free port; ``sndbuf`` is inherited by accepted sockets."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind((host, 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def load_app(app: Any) -> Any:
    """An ASGI app given as an object or as a ``"module:attribute"`` import string."""
    if not isinstance(app, str):
        return app
    module_name, _, attribute = app.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in (attribute or "app").split("."):
        target = getattr(target, part)
    return target


def task_count() -> int:
    """Tasks alive in the current event loop (asyncio or trio); call it inside the loop."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        import trio

        root = trio.lowlevel.current_root_task()
        assert root is not None
        count, stack = 0, [root]
        while stack:
            task = stack.pop()
            count += 1
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return count


# -- a server in a thread ------------------------------------------------------------------


@dataclass
class RunningServer:
    """A server running in a thread of this process."""

    server: ServerName
    backend: str
    host: str
    port: int
    token: anyio.lowlevel.EventLoopToken | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = None
    stopped_in: float | None = None
    _stop: Callable[[], None] | None = None
    _started: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a sync function in the server's event loop and return its result (blocks)."""
        assert self.token is not None
        return anyio.from_thread.run_sync(function, *args, token=self.token)

    def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a coroutine function in the server's event loop and return its result (blocks)."""
        assert self.token is not None
        return anyio.from_thread.run(function, *args, token=self.token)  # type: ignore[arg-type]

    async def acall(self, function: Callable[..., T], *args: Any) -> T:
        """``call`` from an async test without blocking the test's own event loop."""
        return await anyio.to_thread.run_sync(lambda: self.call(function, *args))

    async def arun(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``run`` from an async test without blocking the test's own event loop."""
        return await anyio.to_thread.run_sync(lambda: self.run(function, *args))

    def task_count(self) -> int:
        """Tasks alive in the server's event loop (from sync code)."""
        return self.call(task_count)

    async def atask_count(self) -> int:
        """Tasks alive in the server's event loop (from an async test)."""
        return await self.acall(task_count)

    def stop(self, timeout: float = 10.0) -> float:
        """Ask the server to stop, wait for its thread; return the seconds it took.

        Raises:
            TimeoutError: the server was still running after ``timeout`` seconds.
        """
        assert self.thread is not None
        assert self._stop is not None
        began = time.monotonic()
        if self.thread.is_alive():
            self._stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"{self.server} did not stop within {timeout} s")
        self.stopped_in = time.monotonic() - began
        return self.stopped_in


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    *,
    server: ServerName = "uvicorn",
    backend: str | None = None,
    host: str = "127.0.0.1",
    sndbuf: int | None = None,
    lifespan: bool = True,
    options: Mapping[str, Any] | None = None,
    startup_timeout: float = 10.0,
) -> Iterator[RunningServer]:
    """Serve ``app`` (an object or ``"module:attr"``) in a new thread until the block exits.

    Args:
        app: the ASGI app.
        server: ``"uvicorn"`` (asyncio) or ``"hypercorn"`` (``backend``: trio by default).
        backend: the event loop for hypercorn: ``"trio"`` or ``"asyncio"``.
        host: the loopback address to listen on.
        sndbuf: ``SO_SNDBUF`` of the server's connections (to fill them up quickly).
        lifespan: run the app's lifespan (startup before serving, shutdown at the end).
        options: extra ``uvicorn.Config`` keyword arguments, or hypercorn ``Config``
            attributes.
        startup_timeout: seconds to wait for the server to accept connections.

    On exit the server is stopped (``stop()``; a test may have stopped it already) and an
    exception from its thread is re-raised.
    """
    application = load_app(app)
    if not lifespan and server == "hypercorn":
        application = _without_lifespan(application)
    sock = free_socket(host, sndbuf=sndbuf)
    loop_backend = backend or ("asyncio" if server == "uvicorn" else "trio")
    handle = RunningServer(server, loop_backend, host, sock.getsockname()[1])
    extra = dict(options or {})

    async def run_uvicorn() -> None:
        import uvicorn

        config = uvicorn.Config(
            application,
            lifespan="on" if lifespan else "off",
            log_level=extra.pop("log_level", "warning"),
            **extra,
        )
        instance = uvicorn.Server(config)
        handle.token = anyio.lowlevel.current_token()

        def stop() -> None:
            instance.should_exit = True

        handle._stop = stop

        async def mark_started() -> None:
            while not instance.started:
                await anyio.sleep(0.01)
                if instance.should_exit:
                    return
            handle._started.set()

        async with anyio.create_task_group() as group:
            group.start_soon(mark_started)
            await instance.serve(sockets=[sock])
            group.cancel_scope.cancel()

    async def run_hypercorn() -> None:
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.loglevel = "WARNING"
        config.accesslog = None
        for name, value in extra.items():
            setattr(config, name, value)
        handle.token = anyio.lowlevel.current_token()
        shutdown = anyio.Event()
        # Not anyio.from_thread: stop() must not block, it may run in another event loop.
        if loop_backend == "trio":
            import trio

            token = trio.lowlevel.current_trio_token()

            def stop() -> None:
                token.run_sync_soon(shutdown.set)
        else:
            loop = asyncio.get_running_loop()

            def stop() -> None:
                loop.call_soon_threadsafe(shutdown.set)

        handle._stop = stop
        if loop_backend == "trio":
            import trio
            from hypercorn.trio import serve as trio_serve

            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: trio_serve(
                        application, config, shutdown_trigger=shutdown.wait, task_status=task_status
                    )
                )
                handle._started.set()
        else:
            from hypercorn.asyncio import serve as asyncio_serve

            async def announce() -> None:
                # hypercorn.asyncio.serve has no task_status: poll the port instead.
                while True:
                    with contextlib.suppress(OSError):
                        stream = await anyio.connect_tcp(host, handle.port)
                        await stream.aclose()
                        handle._started.set()
                        return
                    await anyio.sleep(0.01)

            async with anyio.create_task_group() as group:
                group.start_soon(announce)
                await asyncio_serve(application, config, shutdown_trigger=shutdown.wait)

    def main() -> None:
        try:
            if server == "uvicorn":
                anyio.run(run_uvicorn, backend="asyncio")
            else:
                anyio.run(run_hypercorn, backend=loop_backend)
        except BaseException as exc:
            handle.error = exc
        finally:
            handle._started.set()

    handle.thread = threading.Thread(target=main, name=f"{server}-{handle.port}", daemon=True)
    handle.thread.start()
    try:
        if not handle._started.wait(startup_timeout):
            raise TimeoutError(f"{server} did not start within {startup_timeout} s")
        if handle.error is not None:
            raise handle.error
        yield handle
    finally:
        if handle.thread.is_alive():
            handle.stop()
        if sock.fileno() != -1:
            sock.close()
    if handle.error is not None:
        raise handle.error


def _without_lifespan(app: Any) -> Any:
    """Answer the lifespan protocol without passing it on (hypercorn cannot turn it off)."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    return wrapper


# -- a server in a subprocess --------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server running in a child process."""

    server: ServerName
    host: str
    port: int
    process: subprocess.Popen[bytes]
    output: bytes = b""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 10.0) -> float:
        """Wait for the process to exit; return the seconds it took (raises TimeoutError)."""
        began = time.monotonic()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.server} did not exit within {timeout} s") from None
        return time.monotonic() - began


@contextlib.contextmanager
def serve_in_subprocess(
    app: str,
    *,
    server: ServerName = "uvicorn",
    backend: str = "asyncio",
    host: str = "127.0.0.1",
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    ready_path: str = "/",
    startup_timeout: float = 20.0,
) -> Iterator[ServerProcess]:
    """Run ``uvicorn``, ``hypercorn`` (``--worker-class backend``) or ``granian`` serving ``app``.

    ``app`` is an import string; this directory (``tests/``) is on the child's
    ``PYTHONPATH``. The server counts as started once a request to ``ready_path`` gets
    any HTTP response. On exit the process is killed if it is still running; its output
    is kept in ``output``.
    """
    sock = free_socket(host)
    fd = sock.fileno()
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", app, "--fd", str(fd), "--log-level", "warning"]
    elif server == "hypercorn":
        command = [sys.executable, "-m", "hypercorn", app, "--bind", f"fd://{fd}"]
        command += ["--worker-class", backend, "--log-level", "WARNING"]
    else:
        # granian binds by itself: the port is free now, and reused at once (a small race).
        command = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", host]
        command += ["--port", str(sock.getsockname()[1]), "--log-level", "warning", app]
        fd = -1
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [HERE, *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment.update(env or {})
    port = int(sock.getsockname()[1])
    if fd == -1:
        sock.close()
    process = subprocess.Popen(
        [*command, *args],
        pass_fds=[fd] if fd != -1 else [],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sock.close()  # the child holds its own copy of the listening socket
    handle = ServerProcess(server, host, port, process)
    try:
        _wait_ready(host, handle.port, ready_path, process, startup_timeout)
        yield handle
    finally:
        if process.poll() is None:
            process.kill()
        handle.output, _ = process.communicate(timeout=10)


def _wait_ready(
    host: str, port: int, path: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else b""
            raise RuntimeError(f"server exited with {process.returncode}: {output.decode()}")
        try:
            with socket.create_connection((host, port), timeout=1) as probe:
                probe.sendall(f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
                if probe.recv(12).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server did not answer within {timeout} s")


# -- a raw HTTP/1.1 client -----------------------------------------------------------------


class RawHTTPStream:
    """One HTTP/1.1 request over an anyio socket, its response decoded as it arrives.

    The body is de-chunked and fed to ``SSEDecoder``; ``ended`` turns true at the final
    zero-length chunk (a response finished cleanly), ``closed`` when the server closed the
    connection.
    """

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.events: list[Event] = []
        self.decoder = SSEDecoder()
        self.ended = False
        self.closed = False
        self._buffer = b""
        self._chunked = False
        self._length: int | None = None
        self._read = 0

    @property
    def comments(self) -> list[str]:
        return self.decoder.comments

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.closed = True
            return False
        self._buffer += data
        return True

    async def read_head(self) -> None:
        while b"\r\n\r\n" not in self._buffer:
            if not await self._fill():
                raise ConnectionError("the server closed the connection before the headers")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if "content-length" in self.headers:
            self._length = int(self.headers["content-length"])
        self._parse()

    def _parse(self) -> None:
        if not self._chunked:
            if self._buffer:
                self._take(self._buffer)
                self._buffer = b""
            if self._length is not None and len(self.body) >= self._length:
                self.ended = True
            return
        while not self.ended:
            size_line, sep, rest = self._buffer.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            if size == 0:
                self.ended = True
            else:
                self._take(rest[:size])
            self._buffer = rest[size + 2 :]

    def _take(self, data: bytes) -> None:
        self.body += data
        self.events.extend(self.decoder.feed(data))

    async def _more(self) -> bool:
        if self.ended or self.closed:
            return False
        if await self._fill():
            self._parse()
            return True
        return False

    async def read_events(self, n: int = 1, *, timeout: float = 5.0) -> list[Event]:
        """The next ``n`` unread events (fewer if the response ended first)."""
        with anyio.fail_after(timeout):
            while len(self.events) - self._read < n and await self._more():
                pass
        events = self.events[self._read : self._read + n]
        self._read += len(events)
        return events

    async def wait_comments(self, n: int, *, timeout: float = 5.0) -> list[str]:
        with anyio.fail_after(timeout):
            while len(self.comments) < n and await self._more():
                pass
        return self.comments

    async def read_to_end(self, *, timeout: float = 5.0) -> bytes:
        """Read until the response ends or the connection closes; return the whole body."""
        with anyio.fail_after(timeout):
            while await self._more():
                pass
        return self.body

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_stream(
    host: str,
    port: int,
    path: str = "/",
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    read_head: bool = True,
) -> RawHTTPStream:
    """Connect, send one request, and (by default) read the response's status and headers."""
    stream = await anyio.connect_tcp(host, port)
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}", "accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    response = RawHTTPStream(stream)
    if read_head:
        try:
            await response.read_head()
        except BaseException:
            await stream.aclose()
            raise
    return response


@contextlib.asynccontextmanager
async def streaming(
    server: RunningServer | ServerProcess, path: str = "/", **options: Any
) -> AsyncIterator[RawHTTPStream]:
    """``open_stream`` on ``server`` (same options), closed on the way out."""
    stream = await open_stream(server.host, server.port, path, **options)
    try:
        yield stream
    finally:
        await stream.aclose()


async def read_sse_then_leave(source: Any, n: int, *, timeout: float = 5.0) -> list[Any]:
    """Read ``n`` events with httpx-sse (``source`` from ``aconnect_sse``), then hang up.

    The connection is closed in the middle of the stream, as a leaving browser does. Closing
    the response (rather than breaking out of the loop) also ends httpx's inner generators,
    which trio would otherwise report as garbage-collected unfinished.
    """
    import httpx

    received: list[Any] = []
    with anyio.fail_after(timeout), contextlib.suppress(httpx.ReadError, httpx.StreamClosed):
        async with contextlib.aclosing(source.aiter_sse()) as messages:
            async for message in messages:
                received.append(message)
                if len(received) == n:
                    await source.response.aclose()
    return received
