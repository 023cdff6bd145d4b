"""A live demo of sse-channels: friends see each other come online, who is online now, and a
broadcast.

Run it with ``python -m sse_channels.demo`` (``pip install "sse-channels[demo]"`` brings
uvicorn), or mount [DemoApp][sse_channels.demo.DemoApp] in any ASGI server. It is a
small raw ASGI app over a [ChannelStore][sse_channels.ChannelStore] and
[SSEApp][sse_channels.asgi.SSEApp]; its page uses the browser's own ``EventSource``.
"""

from __future__ import annotations

from ._app import BROADCAST, FRIENDS, ONLINE, DemoApp, user_channel

__all__ = ["BROADCAST", "FRIENDS", "ONLINE", "DemoApp", "user_channel"]
