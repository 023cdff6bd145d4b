"""Is this process one worker of several? (For a process-local backend's warning.)

A server started with ``--workers N`` runs N copies of the app, each with its own store: a
process-local backend then shows each client only the events sent in its own worker. There
is no portable way to ask a server how many workers it runs, so this reads the two places
where the number is visible:

- ``WEB_CONCURRENCY``, which uvicorn, gunicorn and several platforms use as the default
  worker count;
- the command line of the parent process (on Linux, ``/proc/<ppid>/cmdline``), when the
  parent is a known server's supervisor started with ``--workers N``, ``-w N`` or
  ``--workers=N`` (uvicorn, gunicorn, hypercorn, granian).

It cannot see a count set in a configuration file (``gunicorn.conf.py``) or by a process
manager that starts independent processes (systemd, Kubernetes replicas): those run
several processes too, and need a networked backend just the same.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["SERVERS", "parse_worker_count", "warn_if_one_of_several_workers", "worker_count"]

#: Programs whose supervisor process forks or spawns app workers.
SERVERS = ("uvicorn", "gunicorn", "hypercorn", "granian")

_FLAGS = ("--workers", "-w")


def parse_worker_count(argv: Sequence[str]) -> int | None:
    """The worker count a server's command line asks for; ``None`` if it names none.

    ``argv`` is the parent process's command line. It counts only if one of its first
    words names a known server (``uvicorn``, ``python -m gunicorn``, a path ending in one)
    and it has ``--workers N``, ``--workers=N``, ``-w N`` or ``-wN``.
    """
    head = [os.path.basename(word).split(".")[0] for word in argv[:3]]
    if not any(word in SERVERS for word in head):
        return None
    for index, word in enumerate(argv):
        value: str | None = None
        if word in _FLAGS and index + 1 < len(argv):
            value = argv[index + 1]
        elif word.startswith("--workers="):
            value = word.partition("=")[2]
        elif word.startswith("-w") and word[2:].isdigit():
            value = word[2:]
        if value is not None and value.isascii() and value.isdigit():
            return int(value)
    return None


def _parent_argv() -> list[str]:
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as file:
            raw = file.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def worker_count(
    environ: Mapping[str, str] | None = None,
    parent_argv: Callable[[], Sequence[str]] = _parent_argv,
) -> int:
    """How many workers the server that runs this process has: 1 when nothing says more.

    The parent's ``--workers`` wins, as it does for the servers; else ``WEB_CONCURRENCY``.
    """
    flag = parse_worker_count(parent_argv())
    if flag is not None:
        return flag
    env = os.environ if environ is None else environ
    concurrency = env.get("WEB_CONCURRENCY", "").strip()
    if concurrency.isascii() and concurrency.isdigit():
        return max(int(concurrency), 1)
    return 1


_warned = False


def warn_if_one_of_several_workers(logger: logging.Logger, backend: str) -> bool:
    """Log, once per process, that a process-local backend runs in one worker of several.

    Returns whether it logged. Each worker has its own store, so a client sees only the
    events sent in the worker that serves it: silent loss that only a WARNING can surface.
    """
    global _warned
    if _warned:
        return False
    count = worker_count()
    if count <= 1:
        return False
    _warned = True
    logger.warning(
        "%s keeps events in this process, but this process is one of %d server workers "
        "(pid %d): each client sees only the events sent in its own worker. Use a "
        "networked backend (RedisBackend, PostgresBackend) or run one worker.",
        backend,
        count,
        os.getpid(),
    )
    return True
