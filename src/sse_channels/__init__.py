"""sse-channels: Server-Sent Events for Python web apps."""

from __future__ import annotations

from ._decode import SSEDecoder, parse_sse
from ._encode import RESERVED_EVENT_NAMES, format_sse
from ._event import Event
from ._exceptions import (
    BackendError,
    CredentialExpiredError,
    SlowConsumerError,
    SSEChannelsError,
    StoreClosedError,
    SubscriptionClosed,
)
from ._presence import (
    PRESENCE_PREFIX,
    InvalidMemberError,
    MemoryPresence,
    MetadataTooLargeError,
    Presence,
    PresenceBackend,
    PresenceChange,
    PresenceSession,
    PresenceView,
)
from ._store import GAP_EVENT, ChannelStore, StoreStatistics
from ._subscription import Subscription
from ._version import __version__

__all__ = [
    "GAP_EVENT",
    "PRESENCE_PREFIX",
    "RESERVED_EVENT_NAMES",
    "BackendError",
    "ChannelStore",
    "CredentialExpiredError",
    "Event",
    "InvalidMemberError",
    "MemoryPresence",
    "MetadataTooLargeError",
    "Presence",
    "PresenceBackend",
    "PresenceChange",
    "PresenceSession",
    "PresenceView",
    "SSEChannelsError",
    "SSEDecoder",
    "SlowConsumerError",
    "StoreClosedError",
    "StoreStatistics",
    "Subscription",
    "SubscriptionClosed",
    "__version__",
    "format_sse",
    "parse_sse",
]

# Reprs, docs and pickles say ``sse_channels.Event``, not the private module it lives in.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("sse_channels._"):
        _obj.__module__ = __name__
del _name, _obj
