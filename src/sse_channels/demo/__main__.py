"""``python -m sse_channels.demo``: serve the demo with uvicorn and print its URL."""

from __future__ import annotations

import argparse
import socket
import sys
from typing import TYPE_CHECKING

from .._store import ChannelStore
from ._app import DemoApp

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Serve the demo until Ctrl+C or SIGTERM; return the exit code."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m sse_channels.demo",
        description="Serve the sse-channels demo: friends, presence and a broadcast feed.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    shared = parser.add_mutually_exclusive_group()
    shared.add_argument(
        "--redis",
        metavar="URL",
        help="share channels through Redis (e.g. redis://localhost:6379/0), so demos on "
        "several ports show one feed",
    )
    shared.add_argument(
        "--postgres",
        metavar="DSN",
        help="share channels through PostgreSQL (e.g. postgresql://localhost/app; tables in "
        "the schema sse_demo), so demos on several ports show one feed",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn's log level",
    )
    args = parser.parse_args(argv)

    try:
        from ._server import serve
    except ModuleNotFoundError as exc:
        if exc.name != "uvicorn":
            raise
        print("the demo is served by uvicorn: pip install 'sse-channels[demo]'", file=sys.stderr)
        return 2

    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(
            f"cannot listen on {args.host}:{args.port}: {exc} (--port 0 picks a free port)",
            file=sys.stderr,
        )
        return 1
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    presence = None
    if args.redis is not None:
        from ..backends.redis import RedisBackend, RedisPresence

        store = ChannelStore(RedisBackend(args.redis, prefix="sse-demo:"))
        presence = RedisPresence(args.redis, prefix="sse-demo:presence:", ttl=10)
        where = f"Redis at {args.redis}"
    elif args.postgres is not None:
        try:
            from ..backends.postgres import PostgresBackend
        except ModuleNotFoundError as exc:
            if exc.name != "psycopg":
                raise
            print("--postgres needs psycopg: pip install 'sse-channels[postgres]'", file=sys.stderr)
            sock.close()
            return 2
        try:
            backend = PostgresBackend(args.postgres, schema="sse_demo")
        except (TypeError, ValueError) as exc:
            print(f"--postgres: {exc}", file=sys.stderr)
            sock.close()
            return 2
        store = ChannelStore(backend)
        where = "PostgreSQL, schema sse_demo"  # not the DSN: it may hold a password
    else:
        store = ChannelStore()
        where = "in-memory store"
    # Cookies ignore ports: a cookie name per port keeps two demos on one host apart.
    app = DemoApp(store, cookie_name=f"sse_demo_{port}", presence=presence)
    banner = f"sse-channels demo ({where}): http://{host}:{port}/"
    try:
        started = serve(app, sock, banner, log_level=args.log_level)
    finally:
        sock.close()
    if not started:
        return 1
    print("sse-channels demo stopped", flush=True)
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform != "win32":  # on Windows it would let another process share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


if __name__ == "__main__":
    sys.exit(main())
