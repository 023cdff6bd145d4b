"""An app for ``uvicorn --workers N --factory _workers_app:make_app``: the memory backend warns.

Environment: ``SSE_CHANNELS_TEST_WORKERS_DIR``, a directory where each worker writes a file
named after its pid once its lifespan has started the store; ``SSE_CHANNELS_TEST_WORKERS_REDIS``
(a Redis URL, with ``SSE_CHANNELS_TEST_WORKERS_PREFIX``) to run the store on Redis instead of
memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DIR_ENV = "SSE_CHANNELS_TEST_WORKERS_DIR"
REDIS_ENV = "SSE_CHANNELS_TEST_WORKERS_REDIS"
PREFIX_ENV = "SSE_CHANNELS_TEST_WORKERS_PREFIX"


def make_app() -> Any:
    from sse_channels import ChannelStore

    redis_url = os.environ.get(REDIS_ENV)
    if redis_url:
        from sse_channels.backends.redis import RedisBackend

        store = ChannelStore(backend=RedisBackend(redis_url, prefix=os.environ[PREFIX_ENV]))
    else:
        store = ChannelStore()
    started = Path(os.environ[DIR_ENV])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            async with store:
                (started / str(os.getpid())).write_text("started")
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b"ok"
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
