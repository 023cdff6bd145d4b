"""Serving the demo with uvicorn (imported only when the demo runs)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    import socket

    from ._app import DemoApp

__all__ = ["serve"]


class _DemoServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"{self._banner}  (Ctrl+C to stop)", flush=True)


def serve(app: DemoApp, sock: socket.socket, banner: str, *, log_level: str) -> bool:
    """Serve ``app`` on the bound ``sock`` until Ctrl+C or SIGTERM; False if it never started."""
    config = uvicorn.Config(app, lifespan="on", log_level=log_level, timeout_graceful_shutdown=5)
    server = _DemoServer(config, banner)
    # Ctrl+C and SIGTERM both shut down gracefully; uvicorn re-raises the signal after
    # shutting down, and this handler turns SIGTERM's into a KeyboardInterrupt too.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return server.started
