"""An app with presence on Redis or PostgreSQL: ``uvicorn --factory _presence_app:make_app``.

- ``GET /events?channel=a,b&user=alice``: the event stream; a stream with ``user`` joins
  the presence of its channels as that member (``presence=`` on ``SSEApp``);
- ``GET /members?channel=a``: ``{"pid": ..., "members": {...}}`` as this process sees them;
- ``GET /``: ``ok`` (the readiness probe).

``SSEApp`` runs the store and the presence in the lifespan and, on SIGTERM, closes the
presence (its members' leaves are announced) before the store.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

#: Environment: the Redis URL or PostgreSQL DSN, the key prefix (Redis) or schema
#: (PostgreSQL), and the presence ttl the processes share.
URL_ENV = "SSE_CHANNELS_TEST_PRESENCE_URL"
PREFIX_ENV = "SSE_CHANNELS_TEST_PRESENCE_PREFIX"
TTL_ENV = "SSE_CHANNELS_TEST_PRESENCE_TTL"


def make_app() -> Any:
    from sse_channels import ChannelStore, Presence, PresenceBackend
    from sse_channels.asgi import SSEApp

    url, prefix, ttl = os.environ[URL_ENV], os.environ[PREFIX_ENV], float(os.environ[TTL_ENV])
    backend: PresenceBackend
    if url.startswith("redis"):
        from sse_channels.backends.redis import RedisBackend, RedisPresence

        store = ChannelStore(RedisBackend(url, prefix=prefix))
        backend = RedisPresence(url, prefix=prefix + "presence:", ttl=ttl)
    else:
        from sse_channels.backends.postgres import PostgresBackend, PostgresPresence

        store = ChannelStore(PostgresBackend(url, schema=prefix, poll_interval=0.05))
        backend = PostgresPresence(url, schema=prefix, ttl=ttl)
    presence = Presence(store, backend)

    def query(scope: Any) -> dict[str, str]:
        pairs = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        return {name: values[-1] for name, values in pairs.items()}

    events = SSEApp(
        store,
        lambda scope: query(scope)["channel"].split(","),
        key=lambda scope: query(scope).get("user"),
        presence=presence,
        heartbeat=1.0,
    )

    async def respond(send: Any, body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" or scope.get("path") == "/events":
            await events(scope, receive, send)
        elif scope["path"] == "/members":
            members = await presence.members(query(scope)["channel"])
            await respond(send, json.dumps({"pid": os.getpid(), "members": members}).encode())
        else:
            await respond(send, b"ok")

    return app
