"""Detecting that this process is one worker of several (for the memory backend's warning)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_channels._workers import parse_worker_count, worker_count


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
