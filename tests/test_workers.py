"""Detecting that this process is one worker of several (for the memory backend's warning)."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _redis import redis_server, unique_prefix
from _servers import serve_in_subprocess
from _workers_app import DIR_ENV, PREFIX_ENV, REDIS_ENV
from sse_channels._workers import parse_worker_count, worker_count

if TYPE_CHECKING:
    from pathlib import Path

    from _redis import RedisServer

__all__ = ["redis_server"]  # the fixture, re-exported


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["/venv/bin/python", "/venv/bin/uvicorn", "app:app", "--workers", "2"], 2),
        (["python", "-m", "uvicorn", "app:app", "--workers=4"], 4),
        (["/usr/bin/gunicorn", "-w", "3", "-k", "uvicorn.workers.UvicornWorker", "app"], 3),
        (["gunicorn", "-w8", "app"], 8),
        (["hypercorn", "--workers", "2", "app:app"], 2),
        (["granian", "--interface", "asgi", "--workers", "2", "app:app"], 2),
        (["uvicorn", "app:app", "--reload"], None),
        (["uvicorn", "app:app", "--workers", "two"], None),
        (["/usr/bin/bash", "run.sh", "--workers", "4"], None),
        (["python", "manage.py", "-w", "4"], None),
        ([], None),
    ],
)
def test_parse_worker_count_reads_a_known_servers_workers_flag(
    argv: list[str], count: int | None
) -> None:
    assert parse_worker_count(argv) == count


def test_worker_count_prefers_the_parents_flag_to_web_concurrency() -> None:
    parent = ["uvicorn", "app:app", "--workers", "1"]
    assert worker_count({"WEB_CONCURRENCY": "4"}, lambda: parent) == 1


@pytest.mark.parametrize(
    ("environ", "count"),
    [
        ({}, 1),
        ({"WEB_CONCURRENCY": "3"}, 3),
        ({"WEB_CONCURRENCY": " 2 "}, 2),
        ({"WEB_CONCURRENCY": "0"}, 1),
        ({"WEB_CONCURRENCY": "many"}, 1),
    ],
)
def test_worker_count_falls_back_to_web_concurrency(environ: dict[str, str], count: int) -> None:
    assert worker_count(environ, lambda: ["bash"]) == count


@given(st.lists(st.text(max_size=12), max_size=8))
def test_parse_worker_count_never_fails_on_any_command_line(argv: list[str]) -> None:
    result = parse_worker_count(argv)
    assert result is None or result >= 0


def test_worker_count_of_the_test_process_itself_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert worker_count() == 1


# -- over real worker processes --------------------------------------------------------------

WARNING = b"MemoryBackend keeps events in this process, but this process is one of 2 server workers"


def _run_two_workers(tmp_path: Path, env: dict[str, str]) -> bytes:
    """Serve ``_workers_app`` with ``uvicorn --workers 2`` until both workers started."""
    started = tmp_path / "started"
    started.mkdir()
    env = {DIR_ENV: str(started), "WEB_CONCURRENCY": "", **env}
    app = "_workers_app:make_app"
    with serve_in_subprocess(app, args=("--factory", "--workers", "2"), env=env) as server:
        deadline = time.monotonic() + 30
        while len(list(started.iterdir())) < 2:
            assert time.monotonic() < deadline, "the two workers did not both start"
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        server.wait(20)
    assert len(list(started.iterdir())) == 2
    return server.output


def test_memory_backend_under_two_uvicorn_workers_warns_once_in_each(tmp_path: Path) -> None:
    output = _run_two_workers(tmp_path, {})
    lines = [line for line in output.splitlines() if WARNING in line]
    assert len(lines) == 2, output.decode(errors="replace")
    assert all(b"networked backend" in line for line in lines)
    pids = {line.rsplit(b"(pid ", 1)[1].split(b")")[0] for line in lines}
    assert len(pids) == 2  # once per worker, not twice in one


def test_redis_backend_under_two_uvicorn_workers_logs_no_warning(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    prefix = unique_prefix()
    try:
        output = _run_two_workers(tmp_path, {REDIS_ENV: redis_server.url, PREFIX_ENV: prefix})
    finally:
        client = redis_server.client()
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
    assert b"keeps events in this process" not in output, output.decode(errors="replace")
