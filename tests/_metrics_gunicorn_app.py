"""The app the gunicorn metrics test runs: ``gunicorn "_metrics_gunicorn_app:make_app()"``.

A Redis-backed store with ``PrometheusMetrics`` in the global registry (multiprocess mode:
``PROMETHEUS_MULTIPROC_DIR`` is set by the test before the workers start), served with
``with_metrics``:

- ``GET /events?channel=a``: the event stream; the ``x-worker`` header names the process;
- ``POST /send?channel=a&data=x``: send one event from the worker that got the request;
- ``GET /metrics``: the metrics of every worker, summed.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs

from sse_channels import ChannelStore
from sse_channels.asgi import SSEApp
from sse_channels.backends.redis import RedisBackend
from sse_channels.metrics.prometheus import PrometheusMetrics, with_metrics

URL_ENV = "SSE_CHANNELS_TEST_METRICS_REDIS_URL"
PREFIX_ENV = "SSE_CHANNELS_TEST_METRICS_PREFIX"


def make_app() -> Any:
    backend = RedisBackend(os.environ[URL_ENV], prefix=os.environ[PREFIX_ENV])
    store = ChannelStore(backend=backend, metrics=PrometheusMetrics())

    def query(scope: Any) -> dict[str, str]:
        pairs = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        return {name: values[-1] for name, values in pairs.items()}

    events = SSEApp(
        store,
        lambda scope: query(scope)["channel"],
        heartbeat=None,
        headers={"x-worker": str(os.getpid())},
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            async with store:
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/send":
            params = query(scope)
            event = await store.send(params["channel"], params["data"])
            body = f"{os.getpid()} {event.id}".encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await events(scope, receive, send)

    return with_metrics(app)
