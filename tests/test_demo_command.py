"""The README's first command: ``python -m sse_channels.demo`` starts, serves and streams.

Each test runs the command as a child process, talks to it over real HTTP, and stops it
the way a person would (Ctrl+C, or SIGTERM from a process manager).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest

import _postgres
import _redis
from sse_channels import Event, SSEDecoder

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="stops the demo with POSIX signals")

# A real Redis for the --redis test (skipped, saying why, only without redis-server).
redis_server = _redis.redis_server
# And a database of this run's own for the --postgres test.
postgres_server = _postgres.postgres_server
postgres_dsn = _postgres.postgres_dsn

BANNER = re.compile(r"sse-channels demo \((?P<where>[^)]*)\): (?P<url>http://\S+)/")
TIMEOUT = httpx.Timeout(10.0)


class DemoProcess:
    """``python -m sse_channels.demo ARGS`` as a child process; its output is collected."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sse_channels.demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_for_banner(self, timeout: float = 20.0) -> re.Match[str]:
        """Wait until the demo prints its URL (it does once it accepts connections)."""
        deadline = time.monotonic() + timeout
        while (match := BANNER.search(self.output)) is None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"the demo did not print its URL:\n{self.output}")
            time.sleep(0.02)
        return match

    def stop(self, signum: int) -> int:
        """Send ``signum`` and wait for the process to exit; return its exit code."""
        self.process.send_signal(signum)
        code = self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextlib.contextmanager
def run_demo(*args: str) -> Iterator[tuple[DemoProcess, str, str]]:
    """Start the demo; yield it with its URL and store description; kill it at the end."""
    demo = DemoProcess(*args)
    try:
        banner = demo.wait_for_banner()
        yield demo, banner["url"], banner["where"]
    finally:
        demo.close()


def browser_events(response: httpx.Response) -> Iterator[Event]:
    """The events of a streaming response, as a browser's ``EventSource`` dispatches them."""
    decoder = SSEDecoder()
    for chunk in response.iter_bytes():
        yield from decoder.feed(chunk)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_command_serves_the_page_streams_an_event_and_stops_on_ctrl_c() -> None:
    port = free_port()
    with run_demo("--port", str(port)) as (demo, url, where):
        assert url == f"http://127.0.0.1:{port}"
        assert where == "in-memory store"
        page = httpx.get(url + "/", timeout=TIMEOUT)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>sse-channels demo</title>" in page.text
        # The page's script streams through the package's browser module, served beside it.
        assert 'from "/sse-channels.js"' in httpx.get(url + "/app.js", timeout=TIMEOUT).text
        module = httpx.get(url + "/sse-channels.js", timeout=TIMEOUT)
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"
        assert "new Impl(" in module.text  # the browser's own EventSource
        assert httpx.get(url + "/events", timeout=TIMEOUT).status_code == 401

        with (
            httpx.Client(base_url=url, timeout=TIMEOUT) as bob,
            httpx.Client(base_url=url, timeout=TIMEOUT) as alice,
        ):
            login = bob.post("/login", data={"user": "bob"})
            assert login.status_code == 200
            cookie = login.headers["set-cookie"]
            assert cookie.startswith(f"sse_demo_{port}=")
            assert "HttpOnly" in cookie
            assert "SameSite=Lax" in cookie
            with bob.stream("GET", "/events") as response:
                # The response starts once the subscription is live: nothing sent from
                # here on can be missed.
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                # "Online now" (presence:broadcast) has events of its own: not these.
                stream = (
                    event
                    for event in browser_events(response)
                    if event.event not in ("snapshot", "join", "leave", "diff")
                )
                alice.post("/login", data={"user": "alice"}).raise_for_status()
                sent = bob.post("/broadcast", data={"text": "hello"}).json()

                presence = next(stream)
                assert presence.event == "presence"
                assert json.loads(presence.data)["text"] == "alice is online"
                broadcast = next(stream)
                assert broadcast.event == "broadcast"
                assert json.loads(broadcast.data) == {"user": "bob", "text": "bob: hello"}
                assert broadcast.id == sent["id"]

                # Ctrl+C with a stream open: the stream ends cleanly and the server exits.
                assert demo.stop(signal.SIGINT) == 0
                assert list(stream) == []
    assert "sse-channels demo stopped" in demo.output
    assert "Traceback" not in demo.output


def test_two_demo_processes_on_one_redis_share_one_feed(redis_server: _redis.RedisServer) -> None:
    url = redis_server.url
    with (
        run_demo("--port", "0", "--redis", url) as (one, url_one, where),
        run_demo("--port", "0", "--redis", url) as (two, url_two, _),
    ):
        assert where == f"Redis at {url}"
        assert url_one != url_two
        with (
            httpx.Client(base_url=url_one, timeout=TIMEOUT) as bob,
            httpx.Client(base_url=url_two, timeout=TIMEOUT) as alice,
        ):
            bob.post("/login", data={"user": "bob"}).raise_for_status()
            with bob.stream("GET", "/events") as response:
                assert response.status_code == 200
                # Alice is on the other process: her login and broadcast reach bob's
                # stream through Redis.
                alice.post("/login", data={"user": "alice"}).raise_for_status()
                sent = alice.post("/broadcast", data={"text": f"from {url_two}"}).json()
                texts = []
                for event in browser_events(response):
                    if event.event in ("snapshot", "join", "leave", "diff"):
                        continue  # "online now", shared through Redis too
                    texts.append(json.loads(event.data)["text"])
                    if event.id == sent["id"]:
                        break
                assert "alice is online" in texts
                assert texts[-1] == f"alice: from {url_two}"
                assert two.stop(signal.SIGINT) == 0
                assert one.stop(signal.SIGINT) == 0


def test_two_demo_processes_on_one_postgres_share_one_feed(postgres_dsn: str) -> None:
    with (
        run_demo("--port", "0", "--postgres", postgres_dsn) as (one, url_one, where),
        run_demo("--port", "0", "--postgres", postgres_dsn) as (two, url_two, _),
    ):
        assert where == "PostgreSQL, schema sse_demo"
        with (
            httpx.Client(base_url=url_one, timeout=TIMEOUT) as bob,
            httpx.Client(base_url=url_two, timeout=TIMEOUT) as alice,
        ):
            bob.post("/login", data={"user": "bob"}).raise_for_status()
            with bob.stream("GET", "/events") as response:
                assert response.status_code == 200
                # Alice is on the other process: her login and broadcast reach bob's
                # stream through PostgreSQL.
                alice.post("/login", data={"user": "alice"}).raise_for_status()
                sent = alice.post("/broadcast", data={"text": f"from {url_two}"}).json()
                texts = []
                for event in browser_events(response):
                    if event.event in ("snapshot", "join", "leave", "diff"):
                        continue  # "online now" is checked by the presence tests
                    texts.append(json.loads(event.data)["text"])
                    if event.id == sent["id"]:
                        break
                assert "alice is online" in texts
                assert texts[-1] == f"alice: from {url_two}"
                assert two.stop(signal.SIGINT) == 0
                assert one.stop(signal.SIGINT) == 0


def test_demo_command_stops_cleanly_on_sigterm() -> None:
    with (
        run_demo("--port", "0", "--log-level", "warning") as (demo, url, _),
        httpx.Client(base_url=url, timeout=TIMEOUT) as carol,
    ):
        carol.post("/login", data={"user": "carol"}).raise_for_status()
        with carol.stream("GET", "/events") as response:
            assert response.status_code == 200
            began = time.monotonic()
            assert demo.stop(signal.SIGTERM) == 0
            assert time.monotonic() - began < 5
    assert "sse-channels demo stopped" in demo.output
    assert "Traceback" not in demo.output


def test_demo_command_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "sse_channels.demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_sse_channels_console_script_runs_the_demo() -> None:
    script = shutil.which("sse-channels", path=os.path.dirname(sys.executable))
    # Installed by ``pip install -e .``; a venv made before the script existed lacks it.
    command = [script] if script else [sys.executable, "-m", "sse_channels"]
    result = subprocess.run(
        [*command, "demo", "--help"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: sse-channels demo")
    assert "--redis URL" in result.stdout
    assert "--postgres DSN" in result.stdout
