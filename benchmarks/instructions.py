"""Small fixed workloads for counting instructions with valgrind: no load on the machine blurs them.

Run each at two sizes under callgrind and divide the difference by the extra deliveries,
which takes start-up and imports out::

    PYTHONPATH=<tree>/src valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/instructions.py WORKLOAD SUBSCRIBERS EVENTS

Workloads (one channel, one publisher, plain asyncio, the garbage collector off):

- ``iter-burst`` / ``batch-burst``: every event sent in one burst, subscribers reading
  with ``async for`` / ``receive_batch()``;
- ``iter-yield`` / ``batch-yield``: the publisher yields to the loop after every send;
- ``sseapp`` / ``starlette``: SUBSCRIBERS in-process ASGI streams (``SSEApp``, Starlette's
  ``SSEResponse``) writing to a ``send`` that counts the events, a yield after every send.

Prints nothing; exits non-zero if an event is missing.
"""

from __future__ import annotations

import os
import sys

# Run as ``python benchmarks/instructions.py``, this directory comes first on sys.path, where
# http.py and redis.py would shadow the packages of those names.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import asyncio
import contextlib
import gc
from typing import Any

from sse_channels import ChannelStore

CHANNEL = "bench"
WORKLOADS = ["iter-burst", "iter-yield", "batch-burst", "batch-yield", "sseapp", "starlette"]


async def subscriber(store: ChannelStore, events: int, batches: bool) -> None:
    seen = 0
    async with store.subscribe(CHANNEL) as subscription:
        if batches:
            while seen < events:
                seen += len(await subscription.receive_batch())
        else:
            async for _ in subscription:
                seen += 1
                if seen == events:
                    return


async def stream(store: ChannelStore, events: int, kind: str) -> None:
    seen = 0
    gone = asyncio.Event()
    if kind == "sseapp":
        from sse_channels.asgi import SSEApp

        app: Any = SSEApp(store, CHANNEL)
    else:
        from sse_channels.starlette import SSEResponse

        app = SSEResponse(store.subscribe(CHANNEL))

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal seen
        seen += message.get("body", b"").count(b"data: ")
        if seen >= events:
            gone.set()
            raise OSError("the client has every event and leaves")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    with contextlib.suppress(OSError):
        await app(scope, receive, send)
    if seen < events:
        raise SystemExit(f"a stream got {seen} of {events} events")


async def main(workload: str, subscribers: int, events: int) -> None:
    store = ChannelStore(history=max(1000, events))
    async with store:
        if workload in ("sseapp", "starlette"):
            tasks = [stream(store, events, workload) for _ in range(subscribers)]
        else:
            batches = workload.startswith("batch")
            tasks = [subscriber(store, events, batches) for _ in range(subscribers)]
        running = [asyncio.ensure_future(task) for task in tasks]
        while store.statistics().subscribers < subscribers:
            await asyncio.sleep(0)
        burst = workload.endswith("burst")
        for i in range(events):
            await store.send(CHANNEL, f"{i:08d} {'x' * 92}")
            if not burst:
                await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*running), 60)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in WORKLOADS:
        sys.exit(f"usage: instructions.py {{{','.join(WORKLOADS)}}} SUBSCRIBERS EVENTS")
    gc.disable()
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
